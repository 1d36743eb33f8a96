import { exchange } from '../src/http/exchange'
import { classifyUpstreamError } from '../src/http/upstream-errors'
import { planBatch } from '../src/membership/batch-plan'
import type { RoutingTable } from '../src/membership/routing-table'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import { coalescedReadResults } from './batch-results'
import type { ForwardRequest, ForwardResult, Forwarder, KvForward } from './forward'
import type { RouterMetrics } from './metrics'

/**
 * Read coalescing: the plain GETs that reach the router in one turn of the event loop
 * go to each owner primary as one POST /batch of gets, instead of one request each —
 * what twemproxy does when it pipelines many clients' requests onto one server
 * connection. Under load, the per-request cost of an upstream exchange (the router's
 * HTTP client, the node's HTTP server, a SQLite read transaction) is paid once per
 * batch, which is where a proxy in front of a node spends most of its CPU.
 *
 * It changes nothing a client can observe:
 * - A coalesced get is read while its request is in flight (the batch leaves on the
 *   next turn of the loop), so reads stay linearizable, and the node answers it only
 *   once the row's seq is replicated, as for a single GET.
 * - Only 200 and 404 results are taken from the batch, turned into the answer the
 *   single-key path relays (same status, headers and body: see coalescedReadResults).
 *   Anything else — a misdirected key, an answer over the batch's size limit, a node
 *   that is down, failing over or behind the router's map — sends that read through
 *   the single-key Forwarder, with its retries, backoff and 421 handling.
 * - Keys an unsettled rebalance is moving, conditional GETs and HEAD always take the
 *   single-key path (fallback reads and 304s are its business).
 * - A lone read waits for no one: with one read pending, it goes out on its own.
 */

export interface ReadCoalescerOptions {
  forwarder: Forwarder
  table: () => RoutingTable
  /** Most gets in one upstream batch; 1 turns coalescing off. */
  maxKeys: number
  metrics: RouterMetrics
}

interface PendingRead {
  req: ForwardRequest
  resolve: (result: ForwardResult) => void
  reject: (err: unknown) => void
}

const JSON_HEADERS_BASE = { 'content-type': 'application/json' }

export class ReadCoalescer implements KvForward {
  private pending: PendingRead[] = []
  private scheduled = false

  constructor (private readonly options: ReadCoalescerOptions) {}

  forward (req: ForwardRequest): Promise<ForwardResult> {
    if (this.options.maxKeys < 2 || req.method !== 'GET' || req.ifMatch !== undefined || req.ifNoneMatch !== undefined) {
      return this.options.forwarder.forward(req)
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ req, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(this.flush)
      }
    })
  }

  private readonly flush = (): void => {
    this.scheduled = false
    const reads = this.pending
    this.pending = []
    if (reads.length === 1) {
      this.single(reads[0] as PendingRead)
      return
    }
    const table = this.options.table()
    const plan = planBatch(table, reads.map((r) => r.req.key))
    for (const i of plan.single) this.single(reads[i] as PendingRead)
    for (const i of plan.unowned) this.single(reads[i] as PendingRead)
    const max = this.options.maxKeys
    for (const [url, indexes] of plan.byPrimary) {
      for (let start = 0; start < indexes.length; start += max) {
        const part = indexes.slice(start, start + max).map((i) => reads[i] as PendingRead)
        if (part.length === 1) this.single(part[0] as PendingRead)
        else void this.batch(table, url, part)
      }
    }
  }

  private single (read: PendingRead, priorTimeouts = 0): void {
    const req = priorTimeouts === 0 ? read.req : { ...read.req, priorTimeouts }
    this.options.forwarder.forward(req).then(read.resolve, read.reject)
  }

  private async batch (table: RoutingTable, url: string, reads: PendingRead[]): Promise<void> {
    this.options.metrics.countBatchUpstream('coalesced')
    let answers: Array<ForwardResult | undefined>
    try {
      const body = JSON.stringify({ ops: reads.map((r) => ({ op: 'get', key: r.req.key })) })
      const res = await exchange(this.options.forwarder.pool(url), {
        path: BATCH_PATH,
        method: 'POST',
        headers: { ...JSON_HEADERS_BASE, [HEADER.epoch]: table.epochHeader },
        body
      })
      answers = coalescedReadResults(res.status, res.body, reads.length, res.headers[HEADER.node])
    } catch (err) {
      // The single-key path decides what the failure means (retry, give up, 502); a timeout
      // here counts as its one allowed timeout, so a hung node is not waited on three times.
      const timeouts = classifyUpstreamError(err) === 'timeout' ? 1 : 0
      for (const r of reads) this.single(r, timeouts)
      return
    }
    for (let i = 0; i < reads.length; i++) {
      const read = reads[i] as PendingRead
      const answer = answers[i]
      if (answer !== undefined) read.resolve(answer)
      else this.single(read)
    }
  }
}
