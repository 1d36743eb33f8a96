import { RegistryConflict } from '../registry'
import { EtcdError, type EtcdGateway } from './gateway'
import { b64, num, type EtcdCompare, type EtcdRequestOp } from './wire'

/**
 * Writes that hold only if the writer still leads and nothing was written since it last
 * read: every transaction compares the leader key (`guard`) and the mod revision of a
 * version key, and bumps that version key. When a write's answer is lost (a timeout, a
 * reset) the write may still be in flight, so reading back alone cannot tell; instead
 * the version key is bumped under the same compare (a fence): if that succeeds, the lost
 * write can never apply and it is sent again; if it fails, something wrote first, and
 * reading back tells whether that was our write.
 */
export class GuardedWriter {
  /** The version key's mod revision the next write is guarded on (0: never written). */
  private base = 0

  constructor (
    private readonly gateway: EtcdGateway,
    private readonly versionKey: string,
    private readonly guard: (() => EtcdCompare) | undefined,
    /** Fires when the writer's term ends: what it still has in flight is given up. */
    private readonly termSignal: () => AbortSignal | undefined = () => undefined
  ) {}

  /** Reads the version key: the base for the next write. */
  async load (): Promise<void> {
    const kv = (await this.gateway.range(this.versionKey, { signal: this.termSignal() })).kvs[0]
    this.base = kv === undefined ? 0 : num(kv.mod_revision)
  }

  /**
   * Applies `ops` once, or throws RegistryConflict (deposed, or written by someone else
   * since the last read). `applied` reads back whether etcd holds what `ops` wrote.
   */
  async write (ops: EtcdRequestOp[], what: string, applied: () => Promise<boolean>): Promise<void> {
    const guard = this.guard
    if (guard === undefined) throw new RegistryConflict('this registry was opened read-only (no leadership)')
    for (let attempt = 1; attempt <= 3; attempt++) {
      let reply
      try {
        reply = await this.gateway.txn([guard(), this.compare()], [...ops, this.bump(what)], [], this.termSignal())
      } catch (err) {
        if (!(err instanceof EtcdError && err.kind === 'ambiguous')) throw err
        if (await this.settle(guard, what, applied)) return
        continue // fenced: the lost attempt cannot apply any more; send it again
      }
      if (reply.succeeded !== true) {
        throw new RegistryConflict(`etcd refused the ${what} write: this coordinator no longer leads, or another write came first`)
      }
      this.base = reply.revision
      return
    }
    throw new RegistryConflict(`the ${what} write's answers were lost three times`)
  }

  /** True when the lost write applied; false when it was fenced off (it never will). */
  private async settle (guard: () => EtcdCompare, what: string, applied: () => Promise<boolean>): Promise<boolean> {
    let fence
    try {
      fence = await this.gateway.txn([guard(), this.compare()], [this.bump(`fence of ${what}`)], [], this.termSignal())
    } catch (err) {
      throw new RegistryConflict(`the ${what} write's outcome is unknown (the fence sent after it failed too): ${(err as Error).message}`)
    }
    if (fence.succeeded === true) {
      this.base = fence.revision
      return false
    }
    await this.load()
    if (await applied()) return true
    throw new RegistryConflict(`the ${what} write did not apply: this coordinator no longer leads, or another write came first`)
  }

  private compare (): EtcdCompare {
    return { key: b64(this.versionKey), target: 'MOD', result: 'EQUAL', mod_revision: String(this.base) }
  }

  private bump (what: string): EtcdRequestOp {
    return { request_put: { key: b64(this.versionKey), value: b64(what) } }
  }
}
