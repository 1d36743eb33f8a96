import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { BatchOp } from '../src/protocol/batch'
import { METRIC_PREFIX } from '../src/protocol/wire'
import type { GroupView, NodeView } from '../src/protocol/cluster-view'

/**
 * The router's Prometheus metrics, in a registry of its own (not prom-client's global
 * one) so that several routers can run in one process, as tests do.
 *
 * Request metrics are labelled by method and status class only: per-status or
 * per-key labels would grow without bound. The labelled children are looked up
 * once and cached, because prom-client hashes the label set on every `labels()`
 * call and this runs once per request.
 */

const PREFIX = `${METRIC_PREFIX}router_`
const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const

/** The parts of the cluster view (src/protocol/cluster-view.ts) the replication gauges show. */
export type NodeReplicationView = Pick<NodeView, 'url' | 'role' | 'position' | 'lag'> & { group: string }
export type GroupRedundancyView = Pick<GroupView, 'inSyncReplicas' | 'redundancy'> & { group: string }

interface RequestSeries {
  count: { inc: () => void }
  duration: { observe: (seconds: number) => void }
}

export class RouterMetrics {
  readonly registry = new Registry()
  private readonly requests: Counter<'method' | 'status_class'>
  private readonly duration: Histogram<'method' | 'status_class'>
  private readonly retries: Counter<'code'>
  private readonly nodeUp: Gauge<'group' | 'url'>
  private readonly failovers: Counter<'group'>
  private readonly batches: Counter
  private readonly batchOps: { get: { inc: (n: number) => void }, put: { inc: (n: number) => void }, delete: { inc: (n: number) => void } }
  private readonly batchUpstream: Counter<'path'>
  private readonly series = new Map<string, RequestSeries[]>()

  constructor (epoch: () => number, nodes: () => NodeReplicationView[] = () => [], groups: () => GroupRedundancyView[] = () => []) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX })
    this.requests = new Counter({ name: `${PREFIX}http_requests_total`, help: 'Requests answered by the router, by method and status class.', labelNames: ['method', 'status_class'], registers })
    this.duration = new Histogram({
      name: `${PREFIX}http_request_duration_seconds`,
      help: 'Time from request to response in the router, upstream call included.',
      labelNames: ['method', 'status_class'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10],
      registers
    })
    this.retries = new Counter({ name: `${PREFIX}upstream_retries_total`, help: 'Upstream calls retried after a connection-level failure, by error code.', labelNames: ['code'], registers })
    this.nodeUp = new Gauge({ name: `${PREFIX}node_up`, help: 'Health of each shard node as last checked (1 up, 0 down).', labelNames: ['group', 'url'], registers })
    void new Gauge({ name: `${PREFIX}map_epoch`, help: 'Epoch of the cluster map the router routes by.', registers, collect () { this.set(epoch()) } })
    this.failovers = new Counter({ name: `${PREFIX}failovers_total`, help: 'Primaries replaced by a replica, by group.', labelNames: ['group'], registers })
    this.batches = new Counter({ name: `${PREFIX}batches_total`, help: 'Valid POST /batch requests.', registers })
    const ops = new Counter({ name: `${PREFIX}batch_ops_total`, help: 'Operations in valid POST /batch requests, by op.', labelNames: ['op'], registers })
    this.batchOps = { get: ops.labels('get'), put: ops.labels('put'), delete: ops.labels('delete') }
    this.batchUpstream = new Counter({
      name: `${PREFIX}batch_upstream_requests_total`,
      help: 'Upstream calls made for batches: one per group sub-batch (group), one per op on a moving key (single).',
      labelNames: ['path'],
      registers
    })
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
    let byClass = this.series.get(method)
    if (byClass === undefined) {
      // Methods come from a closed set (Node's parser refuses others), so this map stays small.
      byClass = STATUS_CLASSES.map((cls) => ({
        count: this.requests.labels(method, cls),
        duration: this.duration.labels(method, cls)
      }))
      this.series.set(method, byClass)
    }
    const s = byClass[Math.min(5, Math.max(1, Math.floor(status / 100)))] as RequestSeries
    s.count.inc()
    s.duration.observe(elapsedMs / 1000)
  }

  countBatch (ops: readonly BatchOp[]): void {
    this.batches.inc()
    let get = 0
    let put = 0
    let del = 0
    for (const o of ops) {
      if (o.op === 'get') get++
      else if (o.op === 'put') put++
      else del++
    }
    if (get > 0) this.batchOps.get.inc(get)
    if (put > 0) this.batchOps.put.inc(put)
    if (del > 0) this.batchOps.delete.inc(del)
  }

  /** group/single: a client batch's sub-batch or moving key; coalesced: a batch of single GETs (read-coalescer.ts). */
  countBatchUpstream (path: 'group' | 'single' | 'coalesced'): void {
    this.batchUpstream.inc({ path })
  }

  countFailover (group: string): void {
    this.failovers.inc({ group })
  }

  countRetry (code: string): void {
    this.retries.inc({ code })
  }

  setNodeHealth (group: string, url: string, up: boolean): void {
    this.nodeUp.set({ group, url }, up ? 1 : 0)
  }

  forgetNode (group: string, url: string): void {
    this.nodeUp.remove({ group, url })
  }

  async render (): Promise<{ contentType: string, body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
