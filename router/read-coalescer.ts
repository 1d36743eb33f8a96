import { exchange } from '../src/http/exchange'
import { classifyUpstreamError } from '../src/http/upstream-errors'
import { CoalescingQueue, type PendingOp } from '../src/membership/coalescing'
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
  /** Most batches in flight to one primary (undefined: no limit; see src/membership/coalescing.ts). */
  maxInFlight?: number | undefined
  metrics: RouterMetrics
}

type Read = PendingOp<ForwardRequest, ForwardResult>

const JSON_CONTENT_TYPE = 'application/json'

export class ReadCoalescer implements KvForward {
  private readonly queue: CoalescingQueue<ForwardRequest, ForwardResult>

  constructor (private readonly options: ReadCoalescerOptions) {
    this.queue = new CoalescingQueue({
      maxKeys: options.maxKeys,
      maxInFlight: options.maxInFlight,
      table: options.table,
      alone: (read) => { options.forwarder.forward(read.req).then(read.resolve, read.reject) },
      together: async (url, table, reads) => await this.batch(url, table, reads)
    })
  }

  forward (req: ForwardRequest): Promise<ForwardResult> {
    if (this.options.maxKeys < 2 || req.method !== 'GET' || req.ifMatch !== undefined || req.ifNoneMatch !== undefined) {
      return this.options.forwarder.forward(req)
    }
    return this.queue.enqueue(req.key, req)
  }

  private async batch (url: string, table: RoutingTable, reads: readonly Read[]): Promise<Array<ForwardResult | undefined>> {
    this.options.metrics.countBatchUpstream('coalesced')
    try {
      const res = await exchange(this.options.forwarder.pool(url), {
        path: BATCH_PATH,
        method: 'POST',
        // Reads of several principals share one batch: no x-shardkv-principal (the router has
        // authorized each read, and reads bind no request id), only the peer secret.
        headers: { ...this.options.forwarder.peerHeaders, 'content-type': JSON_CONTENT_TYPE, [HEADER.epoch]: table.epochHeader },
        body: JSON.stringify({ ops: reads.map((r) => ({ op: 'get', key: r.key })) })
      })
      return coalescedReadResults(res.status, res.body, reads.length, res.headers[HEADER.node])
    } catch (err) {
      // Every read goes alone, and the single-key path decides what the failure means; a
      // timeout here counts as its one allowed timeout, so a hung node is not waited on three times.
      if (classifyUpstreamError(err) === 'timeout') for (const r of reads) r.req = { ...r.req, priorTimeouts: 1 }
      return []
    }
  }
}
