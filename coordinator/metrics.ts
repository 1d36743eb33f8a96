import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { METRIC_PREFIX } from '../src/protocol/wire'
import type { GroupView, NodeView } from '../src/protocol/cluster-view'

/**
 * The coordinator's Prometheus metrics, in a registry of its own: the map epoch it
 * published, every node's health and replication position as its health checker last
 * saw them, each group's redundancy, failovers, and its own HTTP requests (admin calls,
 * the cluster view, map follows). Labels are groups and node URLs: bounded by the map.
 */

const PREFIX = `${METRIC_PREFIX}coordinator_`

/** The parts of the cluster view (src/protocol/cluster-view.ts) the replication gauges show. */
export type NodeReplicationView = Pick<NodeView, 'url' | 'role' | 'position' | 'lag'> & { group: string }
export type GroupRedundancyView = Pick<GroupView, 'inSyncReplicas' | 'redundancy'> & { group: string }

export class CoordinatorMetrics {
  readonly registry = new Registry()
  private readonly nodeUp: Gauge<'group' | 'url'>
  private readonly failovers: Counter<'group'>
  private readonly requests: Histogram<'method' | 'status_class'>

  constructor (epoch: () => number, leading: () => boolean, nodes: () => NodeReplicationView[], groups: () => GroupRedundancyView[]) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX })
    this.requests = new Histogram({
      name: `${PREFIX}http_request_duration_seconds`,
      help: 'Time from request to response in the coordinator (admin calls, the cluster view, map follows).',
      labelNames: ['method', 'status_class'],
      buckets: [0.001, 0.01, 0.1, 1, 10, 60],
      registers
    })
    this.nodeUp = new Gauge({ name: `${PREFIX}node_up`, help: 'Health of each shard node as last checked (1 up, 0 down).', labelNames: ['group', 'url'], registers })
    void new Gauge({ name: `${PREFIX}map_epoch`, help: 'Epoch of the cluster map this coordinator last published or read.', registers, collect () { this.set(epoch()) } })
    void new Gauge({ name: `${PREFIX}leader`, help: '1 while this coordinator holds the leadership (always 1 with the file registry).', registers, collect () { this.set(leading() ? 1 : 0) } })
    this.failovers = new Counter({ name: `${PREFIX}failovers_total`, help: 'Primaries replaced by a replica, by group.', labelNames: ['group'], registers })
    void new Gauge({
      name: `${PREFIX}group_in_sync_replicas`,
      help: 'In-sync replicas (not known to be down) of each group: how many node losses it survives.',
      labelNames: ['group'],
      registers,
      collect () {
        this.reset()
        for (const g of groups()) this.set({ group: g.group }, g.inSyncReplicas)
      }
    })
    void new Gauge({
      name: `${PREFIX}group_redundancy_none`,
      help: '1 while a group has replicas but none in sync (losing its primary loses the group), else 0.',
      labelNames: ['group'],
      registers,
      collect () {
        this.reset()
        for (const g of groups()) this.set({ group: g.group }, g.redundancy === 'none' ? 1 : 0)
      }
    })
    void new Gauge({
      name: `${PREFIX}node_position`,
      help: 'Replication position (highest seq) each shard node last reported.',
      labelNames: ['group', 'url', 'role'],
      registers,
      collect () {
        this.reset()
        for (const n of nodes()) if (n.position !== null) this.set({ group: n.group, url: n.url, role: n.role }, n.position)
      }
    })
    void new Gauge({
      name: `${PREFIX}node_replication_lag`,
      help: 'How many seqs each replica is behind its primary, as last reported.',
      labelNames: ['group', 'url'],
      registers,
      collect () {
        this.reset()
        for (const n of nodes()) if (n.lag !== null) this.set({ group: n.group, url: n.url }, n.lag)
      }
    })
  }

  observeRequest (method: string, status: number, elapsedMs: number): void {
    this.requests.observe({ method, status_class: `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx` }, elapsedMs / 1000)
  }

  countFailover (group: string): void {
    this.failovers.inc({ group })
  }

  setNodeHealth (group: string, url: string, up: boolean): void {
    this.nodeUp.set({ group, url }, up ? 1 : 0)
  }

  async render (): Promise<{ contentType: string, body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
