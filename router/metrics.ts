import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { BatchOp } from '../src/protocol/batch'
import { METRIC_PREFIX } from '../src/protocol/wire'

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

interface RequestSeries {
  count: { inc: () => void }
  duration: { observe: (seconds: number) => void }
}

export class RouterMetrics {
  readonly registry = new Registry()
  private readonly requests: Counter<'method' | 'status_class'>
  private readonly duration: Histogram<'method' | 'status_class'>
  private readonly retries: Counter<'code'>
  private readonly batches: Counter
  private readonly batchOps: { get: { inc: (n: number) => void }, put: { inc: (n: number) => void }, delete: { inc: (n: number) => void } }
  private readonly batchUpstream: Counter<'path'>
  private readonly series = new Map<string, RequestSeries[]>()

  constructor (epoch: () => number) {
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
    void new Gauge({ name: `${PREFIX}map_epoch`, help: 'Epoch of the cluster map the router routes by.', registers, collect () { this.set(epoch()) } })
    this.batches = new Counter({ name: `${PREFIX}batches_total`, help: 'Valid POST /batch requests.', registers })
    const ops = new Counter({ name: `${PREFIX}batch_ops_total`, help: 'Operations in valid POST /batch requests, by op.', labelNames: ['op'], registers })
    this.batchOps = { get: ops.labels('get'), put: ops.labels('put'), delete: ops.labels('delete') }
    this.batchUpstream = new Counter({
      name: `${PREFIX}batch_upstream_requests_total`,
      help: 'Upstream calls made for batches: one per group sub-batch (group), one per op on a moving key (single), one per coalesced batch of GETs (coalesced) or of writes (coalesced_writes).',
      labelNames: ['path'],
      registers
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
  countBatchUpstream (path: 'group' | 'single' | 'coalesced' | 'coalesced_writes'): void {
    this.batchUpstream.inc({ path })
  }

  countRetry (code: string): void {
    this.retries.inc({ code })
  }

  async render (): Promise<{ contentType: string, body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
