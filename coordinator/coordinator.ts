import { ConfigError, type CoordinatorConfig } from '../src/config/options'
import type { Logger } from '../src/log'
import { FileRegistry } from '../src/registry/file-registry'
import type { MapRegistry } from '../src/registry/registry'
import { fillPeers, initialMap, parseGroupSpec, termOf, validateMap, withMembership, withReportedPeer, type ClusterMap, type GroupSpec } from '../src/membership/map'
import { HealthChecker } from './health'
import type { CoordinatorMetrics } from './metrics'
import { RoutingTable } from '../src/membership/routing-table'
import { NodeClient } from '../src/peer/node-client'
import { redundancyNotices, redundancyOf } from '../src/replication/redundancy'
import type { PeerCredentials } from '../src/auth/peer'
import type { ClusterView, GroupView, NodeView } from '../src/protocol/cluster-view'

/** How often a lasting `redundancy: none` is logged again. */
const REDUNDANCY_REPEAT_MS = 30_000

/**
 * The control plane: the cluster map (kept in the registry), the routing table built
 * from it, and the health of every node.
 *
 * The map changes in exactly one place, `transition`, which checks that the epoch
 * rises, persists the intent, installs the map on every node, and only then persists
 * it as current and swaps the routing table: a router never routes by a map it could
 * lose in a crash, nor by one a node has not fenced for. Rebalancing, failover,
 * switchover and the admin API are built on it.
 */

export interface CoordinatorOptions {
  dataDir: string
  groups: readonly string[]
  vnodes: number
  healthIntervalMs: number
  log: Logger
  metrics?: CoordinatorMetrics
  credentials?: PeerCredentials
  /** Where the map is kept (default: the file registry in dataDir). */
  registry?: MapRegistry
}

export class Coordinator {
  readonly health: HealthChecker
  /** Control-plane client for shard nodes' internal API (installs, migration). */
  readonly nodes: NodeClient
  private current: RoutingTable
  /** Map transitions run one at a time: each starts from the map the previous one published. */
  private transitions: Promise<unknown> = Promise.resolve()
  /** Nodes being brought up to the current epoch (so a slow install is not repeated every check). */
  private readonly syncing = new Set<string>()
  /** Nodes whose reported peer URL is being written into the map. */
  private readonly peerUpdates = new Set<string>()
  private advertisedUrl: string | undefined
  /** The published map and the intent (the map of a transition being installed, durable until published). */
  readonly registry: MapRegistry
  private readonly log: Logger
  private readonly metrics: CoordinatorMetrics | undefined
  private readonly healthIntervalMs: number
  private redundancyTimer: NodeJS.Timeout | undefined
  /** Groups flagged `redundancy: none`: [since, last warned]. */
  private flagged = new Map<string, [number, number]>()
  /** Called with every map this coordinator publishes (the feed routers follow). */
  private readonly published: Array<(map: ClusterMap) => void> = []

  private constructor (map: ClusterMap, registry: MapRegistry, options: CoordinatorOptions) {
    this.current = new RoutingTable(map)
    this.registry = registry
    this.log = options.log
    this.metrics = options.metrics
    this.healthIntervalMs = options.healthIntervalMs
    this.nodes = new NodeClient({ credentials: options.credentials, mapPeerOf: (url) => this.mapPeerOf(url) })
    this.health = new HealthChecker({
      targets: () => this.current.nodes,
      intervalMs: options.healthIntervalMs,
      log: options.log,
      peerTls: options.credentials?.tls,
      onChange: (t, s) => this.metrics?.setNodeHealth(t.group, t.url, s.health === 'up'),
      onCheck: (t, s) => {
        if (s.peer !== null) this.recordPeer(t.url, s.peer)
        this.catchUp(t.url, t.group, s.epoch)
      }
    })
  }

  static async fromConfig (config: CoordinatorConfig, log: Logger, metrics?: CoordinatorMetrics, credentials?: PeerCredentials): Promise<Coordinator> {
    return await Coordinator.open({ dataDir: config.dataDir, groups: config.groups, vnodes: config.vnodes, healthIntervalMs: config.healthIntervalMs, log, metrics, credentials })
  }

  /**
   * Loads the persisted map, or builds the first one from the `--group` flags (none
   * gives an empty cluster) and persists it. Throws ConfigError for bad flags; a
   * persisted map that cannot be read is a different failure and keeps its own error.
   */
  static async open (options: CoordinatorOptions): Promise<Coordinator> {
    const registry = options.registry ?? new FileRegistry(options.dataDir)
    const specs = parseSpecs(options.groups)
    let map: ClusterMap | undefined
    try {
      map = (await registry.load()).map
    } catch (err) {
      throw new Error(`cannot read the cluster map from ${registry.where}: ${(err as Error).message}`, { cause: err })
    }
    if (map === undefined) {
      try {
        map = initialMap(specs, { vnodesPerWeight: options.vnodes, algorithm: 'md5' })
      } catch (err) {
        throw new ConfigError(`--group: ${(err as Error).message}`)
      }
      await registry.publish(map)
      options.log.info({ event: 'map-created', epoch: map.epoch, registry: registry.where, groups: map.groups.length }, 'created the cluster map from --group flags')
      if (specs.length === 0) {
        // Allowed so that groups can be added later through the admin API; until then every key is 503.
        options.log.warn({ event: 'map-empty', registry: registry.where }, 'no --group given: the cluster has no groups and answers 503 for every key')
      }
    } else {
      const ignored = differences(map, specs, options.vnodes)
      if (ignored.length > 0) {
        options.log.warn({ event: 'map-flags-ignored', registry: registry.where, epoch: map.epoch, differences: ignored }, 'using the persisted cluster map; --group/--vnodes flags that differ from it are ignored')
      }
      options.log.info({ event: 'map-loaded', epoch: map.epoch, registry: registry.where, groups: map.groups.length }, 'loaded the persisted cluster map')
    }
    return new Coordinator(map, registry, options)
  }

  get epoch (): number {
    return this.current.epoch
  }

  /** The current map (a snapshot: never mutate it). */
  map (): ClusterMap {
    return this.current.map
  }

  /** The URL shard nodes reach this coordinator at (for in-sync changes), once listening. */
  setAdvertisedUrl (url: string): void {
    this.advertisedUrl = url
    this.nodes.coordinatorUrl = url
  }

  private mapPeerOf (url: string): string | undefined {
    for (const g of this.current.map.groups) {
      const node = g.nodes.find((n) => n.url === url)
      if (node !== undefined) return node.peer
    }
    return undefined
  }

  /**
   * A node's /healthz told where its internal API is: calls go there from now on, and
   * when the map says otherwise (it was put in the map before it reported a peer port,
   * or restarted on another one) a transition writes it into the map, where its group's
   * primary finds it for shipments.
   */
  private recordPeer (url: string, peer: string): void {
    this.nodes.learnPeer(url, peer)
    if (this.peerUpdates.has(url) || withReportedPeer(this.current.map, url, peer) === this.current.map) return
    this.peerUpdates.add(url)
    this.transition(`peer of ${url} is ${peer}`, (current) => withReportedPeer(current, url, peer)).then(
      () => this.log.info({ event: 'node-peer-changed', url, peer }, 'the map has the node\'s peer URL'),
      (err: Error) => this.log.warn({ event: 'node-peer-change-failed', url, peer, err: err.message }, 'could not write the node\'s peer URL into the map')
    ).finally(() => this.peerUpdates.delete(url))
  }

  /**
   * The one way a rebalance or a failover changes the map. Serialized: `compute` sees
   * the map the previous transition published. The next map is installed on every
   * node before it is persisted and routed by (DESIGN: install before publish), so a
   * node fences keys before any router sends them elsewhere. A node that is down is
   * skipped; any
   * other install failure fails the transition, and the caller retries. (A node that
   * returns from down gets the current map right after its first good health check.)
   * `beforePublish` runs between the two when the map changed (a failover grants the
   * promoted primary its first lease there).
   */
  async transition (reason: string, compute: (current: ClusterMap) => ClusterMap, beforePublish?: (next: ClusterMap) => Promise<void>): Promise<ClusterMap> {
    const run = this.transitions.then(async () => {
      const before = this.current.map
      let next = compute(before)
      if (next !== before) {
        // Nodes entering the map get the peer URL they reported when probed.
        next = withMembership(before, fillPeers(next, (url) => this.nodes.peerOf(url)))
        if (next.epoch <= before.epoch) throw new Error(`a transition must raise the epoch (${before.epoch} -> ${next.epoch})`)
        validateMap(next)
      }
      // The intent is persisted before any node sees the map, so a coordinator that dies
      // part way completes this transition on restart instead of guessing from the nodes.
      if (next !== before) await this.registry.savePending(next)
      await this.installEverywhere(next)
      if (next !== before) {
        await beforePublish?.(next)
        await this.publish(next, reason)
      }
      return next
    })
    this.transitions = run.catch(() => undefined)
    return await run
  }

  /** Persists `next` as the published map (clearing the intent), then routes by it. */
  private async publish (next: ClusterMap, reason: string): Promise<void> {
    const before = this.current.map
    const table = new RoutingTable(next)
    await this.registry.publish(next)
    this.current = table
    this.nodes.retain(new Set(next.groups.flatMap((g) => g.nodes.map((n) => n.url))))
    this.log.info({ event: 'map-changed', epoch: next.epoch, previousEpoch: before.epoch, reason }, `cluster map is now epoch ${next.epoch}`)
    for (const listener of this.published) listener(next)
  }

  /** `listener` is called with every map published from now on, after it is persisted. */
  onPublish (listener: (map: ClusterMap) => void): void {
    this.published.push(listener)
  }

  /**
   * Completes a transition that was being installed when this coordinator died: its map
   * may be on some nodes already, which would then refuse the older persisted map.
   */
  async resumePending (): Promise<void> {
    const { pending } = await this.registry.load()
    if (pending === undefined) return
    if (pending.epoch <= this.current.epoch) {
      // Published already (the coordinator died between the two writes of the file registry).
      await this.registry.publish(this.current.map)
      return
    }
    this.log.warn({ event: 'transition-resumed', epoch: pending.epoch, persisted: this.current.epoch }, 'completing the map transition that was interrupted')
    await this.transition('resume the interrupted transition', () => pending)
  }

  async installEverywhere (map: ClusterMap): Promise<void> {
    const failures: string[] = []
    await Promise.all(map.groups.flatMap((g) => g.nodes.map(async (n) => {
      // A node already seen down gets a short try: a frozen or cut-off node would
      // otherwise hold up the transition (a failover, say) for a whole timeout.
      const down = this.health.statusOf(n.url).health === 'down'
      try {
        await this.nodes.installMap(n.url, g.id, map, this.advertisedUrl, down ? 750 : 5000)
      } catch (err) {
        if (this.health.statusOf(n.url).health === 'down') {
          this.log.warn({ event: 'install-skipped', url: n.url, epoch: map.epoch, err: (err as Error).message }, 'node is down; it gets the map when it returns')
          return
        }
        failures.push(`${n.url}: ${(err as Error).message}`)
      }
    })))
    if (failures.length > 0) throw new Error(`installing epoch ${map.epoch} failed on ${failures.join('; ')}`)
  }

  /** A node reporting an older epoch (it was down during a transition) gets the current map. */
  private catchUp (url: string, group: string, epoch: number | null): void {
    const map = this.current.map
    if (epoch === null || epoch >= map.epoch || this.syncing.has(url)) return
    if (!map.groups.some((g) => g.id === group && g.nodes.some((n) => n.url === url))) return
    this.syncing.add(url)
    this.nodes.installMap(url, group, map, this.advertisedUrl).then(
      () => this.log.info({ event: 'node-caught-up', url, from: epoch, epoch: map.epoch }, 'installed the current map on a lagging node'),
      (err: Error) => this.log.warn({ event: 'catch-up-failed', url, err: err.message }, 'could not install the current map on a lagging node')
    ).finally(() => this.syncing.delete(url))
  }

  view (): ClusterView {
    const t = this.current
    return {
      epoch: t.epoch,
      ring: { ...t.map.ring },
      groups: t.map.groups.map((g): GroupView => {
        const primary = g.nodes.find((n) => n.role === 'primary')
        const primaryPosition = primary !== undefined ? this.health.statusOf(primary.url).position : null
        const nodes = g.nodes.map((n): NodeView => {
          const s = this.health.statusOf(n.url)
          const lag = n.role === 'replica' && s.position !== null && primaryPosition !== null ? Math.max(0, primaryPosition - s.position) : null
          return {
            url: n.url,
            role: n.role,
            ...(n.role === 'replica' ? { inSync: n.inSync === true } : {}),
            health: s.health,
            pid: s.pid,
            nodeId: s.nodeId,
            position: s.position,
            lag,
            lastCheckAt: s.lastCheckAt,
            lastError: s.lastError
          }
        })
        return {
          id: g.id,
          weight: g.weight,
          state: g.state,
          term: termOf(g),
          points: t.points.get(g.id) ?? 0,
          ...redundancyOf(nodes),
          nodes
        }
      })
    }
  }

  start (): void {
    this.health.start()
    this.redundancyTimer = setInterval(() => this.logRedundancy(), Math.max(1000, 2 * this.healthIntervalMs))
    this.redundancyTimer.unref()
  }

  /** A warning when a group has replicas but none in sync, repeated while it lasts; a line when it recovers. */
  private logRedundancy (): void {
    const groups = this.view().groups
    const r = redundancyNotices(groups, this.flagged, Date.now(), REDUNDANCY_REPEAT_MS)
    this.flagged = r.since
    for (const w of r.warn) {
      const g = groups.find((x) => x.id === w.group)
      this.log.warn({ event: 'redundancy-none', group: w.group, forMs: w.forMs, replicas: g?.nodes.filter((n) => n.role === 'replica').map((n) => ({ url: n.url, inSync: n.inSync, health: n.health })) },
        `group ${w.group} has no in-sync replica: its primary acknowledges writes alone, and losing it loses the group until it returns`)
    }
    for (const x of r.recovered) this.log.info({ event: 'redundancy-restored', group: x.group, afterMs: x.afterMs }, `group ${x.group} has an in-sync replica again`)
  }

  async close (): Promise<void> {
    if (this.redundancyTimer !== undefined) clearInterval(this.redundancyTimer)
    await this.health.stop()
    await this.nodes.close()
  }
}

function parseSpecs (groups: readonly string[]): GroupSpec[] {
  try {
    return groups.map(parseGroupSpec)
  } catch (err) {
    throw new ConfigError(`--group: ${(err as Error).message}`)
  }
}

/** What in the flags disagrees with the persisted map (empty when flags are absent or agree). */
function differences (map: ClusterMap, specs: readonly GroupSpec[], vnodes: number): string[] {
  if (specs.length === 0) return []
  const out: string[] = []
  if (map.ring.vnodesPerWeight !== vnodes) out.push(`--vnodes ${vnodes} (map has ${map.ring.vnodesPerWeight})`)
  const byId = new Map(map.groups.map((g) => [g.id, g]))
  for (const s of specs) {
    const g = byId.get(s.id)
    const primary = g?.nodes.find((n) => n.role === 'primary')
    if (g === undefined) out.push(`group ${s.id} is not in the map`)
    else if (primary?.url !== s.url || g.weight !== s.weight) out.push(`group ${s.id} is ${primary?.url ?? '?'}@${g.weight} in the map, ${s.url}@${s.weight} in the flags`)
  }
  const flagged = new Set(specs.map((s) => s.id))
  for (const g of map.groups) {
    if (!flagged.has(g.id)) out.push(`group ${g.id} is in the map but not in the flags`)
  }
  return out
}
