import { validateMap, type ClusterMap } from '../../membership/map'
import { RegistryConflict, type MapRegistry, type MapWatch, type RegistryState } from '../registry'
import { EtcdError, type EtcdGateway } from './gateway'
import { EtcdWatch } from './watch'
import { b64, num, unb64, type EtcdCompare, type EtcdKeyValue } from './wire'

/** Where a cluster's state lives in etcd (one prefix per cluster, so clusters can share an etcd). */
export function clusterKeys (cluster: string): { map: string, pending: string, leader: string, nodes: string } {
  const root = `/shardkv/${cluster}/`
  return { map: `${root}map`, pending: `${root}map-pending`, leader: `${root}coordinator/leader`, nodes: `${root}nodes/` }
}

export interface EtcdRegistryOptions {
  gateway: EtcdGateway
  cluster: string
  /**
   * The leadership compare every write carries (EtcdLeadership.guard), undefined for a
   * reader. Without it a registry can only read and watch.
   */
  guard?: () => EtcdCompare
}

/**
 * The map in etcd. A write is one transaction that holds only if the writer still
 * leads (its leader key exists at its fence) and the map is still the one it last read
 * or wrote (compare on the map key's mod revision): a deposed coordinator, or one that
 * raced another, changes nothing and learns so (RegistryConflict). A write whose answer
 * was lost is settled by reading the map back, never by repeating it blindly.
 */
export class EtcdRegistry implements MapRegistry {
  readonly kind = 'etcd' as const
  readonly keys: ReturnType<typeof clusterKeys>
  /** The map key's mod revision the next write is guarded on (0: absent). */
  private base = 0

  constructor (private readonly opts: EtcdRegistryOptions) {
    this.keys = clusterKeys(opts.cluster)
  }

  get where (): string {
    return `etcd ${this.opts.gateway.endpoints.join(',')} at ${this.keys.map}`
  }

  async load (): Promise<RegistryState> {
    const r = await this.opts.gateway.range(this.keys.map, { prefix: true }) // the map and map-pending
    const byKey = new Map(r.kvs.map((kv) => [unb64(kv.key), kv]))
    const map = byKey.get(this.keys.map)
    this.base = map === undefined ? 0 : num(map.mod_revision)
    return { map: parseMap(map), pending: parseMap(byKey.get(this.keys.pending)) }
  }

  async savePending (next: ClusterMap): Promise<void> {
    await this.write(next, [{ request_put: { key: b64(this.keys.pending), value: b64(JSON.stringify(next)) } }], 'pending')
  }

  async publish (next: ClusterMap): Promise<void> {
    await this.write(next, [
      { request_put: { key: b64(this.keys.map), value: b64(JSON.stringify(next)) } },
      { request_delete_range: { key: b64(this.keys.pending) } }
    ], 'map')
  }

  watch (afterEpoch: number, onMap: (map: ClusterMap) => void): MapWatch {
    return new MapFollower(this.opts.gateway, this.keys.map, afterEpoch, onMap)
  }

  async close (): Promise<void> {}

  private async write (next: ClusterMap, ops: Parameters<EtcdGateway['txn']>[1], what: 'pending' | 'map'): Promise<void> {
    const guard = this.opts.guard
    if (guard === undefined) throw new RegistryConflict('this registry was opened read-only (no leadership)')
    const compare: EtcdCompare[] = [guard(), { key: b64(this.keys.map), target: 'MOD', result: 'EQUAL', mod_revision: String(this.base) }]
    let reply
    try {
      reply = await this.opts.gateway.txn(compare, ops)
    } catch (err) {
      if (!(err instanceof EtcdError && err.kind === 'ambiguous')) throw err
      // The answer was lost: the write applied exactly when etcd now holds what we wrote.
      if (await this.holds(next, what)) return
      throw new RegistryConflict(`the ${what} write's outcome was lost and etcd does not hold it: ${err.message}`)
    }
    if (reply.succeeded !== true) {
      throw new RegistryConflict(`etcd refused the ${what} write at epoch ${next.epoch}: this coordinator no longer leads, or the map changed since it was read`)
    }
    if (what === 'map') this.base = reply.revision
  }

  private async holds (next: ClusterMap, what: 'pending' | 'map'): Promise<boolean> {
    const r = await this.opts.gateway.range(what === 'map' ? this.keys.map : this.keys.pending)
    const kv = r.kvs[0]
    if (kv === undefined || unb64(kv.value) !== JSON.stringify(next)) return false
    if (what === 'map') this.base = num(kv.mod_revision)
    return true
  }
}

function parseMap (kv: EtcdKeyValue | undefined): ClusterMap | undefined {
  if (kv === undefined) return undefined
  return validateMap(JSON.parse(unb64(kv.value)))
}

/**
 * Follows the published map: reads it, then watches from the revision after that read.
 * When etcd has compacted past the resume point it reads again (the map is one key, so
 * the read is the whole state) and watches on: a follower never skips a map silently.
 */
class MapFollower implements MapWatch {
  private watch: EtcdWatch | undefined
  private closed = false
  private seen: number

  constructor (private readonly gateway: EtcdGateway, private readonly key: string, afterEpoch: number, private readonly onMap: (map: ClusterMap) => void) {
    this.seen = afterEpoch
    void this.follow()
  }

  async close (): Promise<void> {
    this.closed = true
    await this.watch?.close()
  }

  private deliver (text: string): void {
    let map: ClusterMap
    try {
      map = validateMap(JSON.parse(text))
    } catch {
      return // not a map this version can route by; the next publish replaces it
    }
    if (map.epoch <= this.seen) return
    this.seen = map.epoch
    this.onMap(map)
  }

  private async follow (): Promise<void> {
    let revision = 0
    while (!this.closed && revision === 0) {
      try {
        const r = await this.gateway.range(this.key)
        const kv = r.kvs[0]
        if (kv !== undefined) this.deliver(unb64(kv.value))
        revision = r.revision
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
    if (this.closed) return
    this.watch = new EtcdWatch(this.gateway, this.key, { startRevision: revision + 1 }, {
      onChanges: (changes) => {
        for (const c of changes) if (c.type === 'put') this.deliver(c.value)
      },
      onCompacted: () => {
        this.watch = undefined
        void this.follow()
      }
    })
  }
}
