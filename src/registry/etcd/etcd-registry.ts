import { validateMap, type ClusterMap } from '../../membership/map'
import type { RebalanceState } from '../../membership/rebalance'
import type { MapRegistry, MapWatch, RegistryState } from '../registry'
import type { EtcdGateway } from './gateway'
import { GuardedWriter } from './guarded-write'
import { EtcdWatch } from './watch'
import { b64, unb64, type EtcdCompare } from './wire'

/** Where a cluster's state lives in etcd (one prefix per cluster, so clusters can share an etcd). */
export function clusterKeys (cluster: string): { map: string, pending: string, mapVersion: string, rebalance: string, rebalanceVersion: string, leader: string, nodes: string, routers: string } {
  const root = `/shardkv/${cluster}/`
  return {
    map: `${root}map`,
    pending: `${root}map-pending`,
    mapVersion: `${root}map-version`,
    rebalance: `${root}rebalance`,
    rebalanceVersion: `${root}rebalance-version`,
    leader: `${root}coordinator/leader`,
    nodes: `${root}nodes/`,
    routers: `${root}routers/`
  }
}

export interface EtcdRegistryOptions {
  gateway: EtcdGateway
  cluster: string
  /**
   * The leadership compare every write carries (EtcdLeadership.guard), undefined for a
   * reader. Without it a registry can only read and watch.
   */
  guard?: () => EtcdCompare
  /**
   * Fires when the writer's term ends (a deposed coordinator): its reads and writes in
   * flight are given up at once rather than wait out etcd's timeouts, so that the term
   * stops promptly even when etcd has no quorum.
   */
  termSignal?: () => AbortSignal | undefined
}

/**
 * The map in etcd. A write is one transaction that holds only if the writer still
 * leads (its leader key exists at its fence) and nothing was written since it last read
 * (GuardedWriter): a deposed coordinator, or one that raced another, changes nothing and
 * learns so (RegistryConflict). The rebalance state has a guard of its own, so that a
 * failover's map change does not refuse the rebalancer's next progress write.
 */
export class EtcdRegistry implements MapRegistry {
  readonly kind = 'etcd' as const
  readonly keys: ReturnType<typeof clusterKeys>
  private readonly maps: GuardedWriter
  private readonly rebalances: GuardedWriter

  constructor (private readonly opts: EtcdRegistryOptions) {
    this.keys = clusterKeys(opts.cluster)
    this.maps = new GuardedWriter(opts.gateway, this.keys.mapVersion, opts.guard, opts.termSignal)
    this.rebalances = new GuardedWriter(opts.gateway, this.keys.rebalanceVersion, opts.guard, opts.termSignal)
  }

  get where (): string {
    return `etcd ${this.opts.gateway.endpoints.join(',')} at ${this.keys.map}`
  }

  async load (): Promise<RegistryState> {
    await this.maps.load()
    const [map, pending] = await Promise.all([this.read(this.keys.map), this.read(this.keys.pending)])
    return { map: parseMap(map), pending: parseMap(pending) }
  }

  async savePending (next: ClusterMap): Promise<void> {
    const text = JSON.stringify(next)
    await this.maps.write([{ request_put: { key: b64(this.keys.pending), value: b64(text) } }], `intent at epoch ${next.epoch}`,
      async () => await this.read(this.keys.pending) === text)
  }

  async publish (next: ClusterMap): Promise<void> {
    const text = JSON.stringify(next)
    await this.maps.write([
      { request_put: { key: b64(this.keys.map), value: b64(text) } },
      { request_delete_range: { key: b64(this.keys.pending) } }
    ], `map at epoch ${next.epoch}`, async () => await this.read(this.keys.map) === text)
  }

  async loadRebalance (): Promise<RebalanceState | undefined> {
    await this.rebalances.load()
    const text = await this.read(this.keys.rebalance)
    return text === undefined ? undefined : JSON.parse(text) as RebalanceState
  }

  async saveRebalance (state: RebalanceState): Promise<void> {
    const text = JSON.stringify(state)
    await this.rebalances.write([{ request_put: { key: b64(this.keys.rebalance), value: b64(text) } }], `rebalance ${state.id} state`,
      async () => await this.read(this.keys.rebalance) === text)
  }

  watch (afterEpoch: number, onMap: (map: ClusterMap) => void): MapWatch {
    return new MapFollower(this.opts.gateway, this.keys.map, afterEpoch, onMap)
  }

  async close (): Promise<void> {}

  private async read (key: string): Promise<string | undefined> {
    const kv = (await this.opts.gateway.range(key, { signal: this.opts.termSignal?.() })).kvs[0]
    return kv === undefined ? undefined : unb64(kv.value)
  }
}

function parseMap (text: string | undefined): ClusterMap | undefined {
  return text === undefined ? undefined : validateMap(JSON.parse(text))
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
