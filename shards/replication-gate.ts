import { ShardKvError } from '../src/protocol/errors'

/**
 * Where a worker waits for replication. The supervisor ships the change log and
 * broadcasts the replicated position; a write (or a read of a row) at seq n is
 * answered only once that position reaches n, so a client never sees anything a
 * failover could take back.
 */
export class ReplicationGate {
  private position = -1
  private waiters: Array<{ seq: number, resolve: () => void, reject: (err: Error) => void, timer: NodeJS.Timeout }> = []

  constructor (private readonly timeoutMs: number) {}

  get replicated (): number {
    return this.position
  }

  update (position: number): void {
    if (position <= this.position) return
    this.position = position
    if (this.waiters.length === 0) return
    const still: typeof this.waiters = []
    for (const w of this.waiters) {
      if (w.seq <= position) {
        clearTimeout(w.timer)
        w.resolve()
      } else {
        still.push(w)
      }
    }
    this.waiters = still
  }

  /** Resolves once `seq` is replicated; rejects (503: outcome unknown) after the timeout. */
  async waitFor (seq: number): Promise<void> {
    if (seq <= this.position) return
    await new Promise<void>((resolve, reject) => {
      const entry = {
        seq,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== entry)
          reject(new ShardKvError('unavailable', `not replicated within ${this.timeoutMs} ms; the write may or may not take effect`))
        }, this.timeoutMs)
      }
      this.waiters.push(entry)
    })
  }
}
