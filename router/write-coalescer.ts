import { exchange } from '../src/http/exchange'
import { classifyUpstreamError } from '../src/http/upstream-errors'
import { CoalescingQueue, type PendingOp } from '../src/membership/coalescing'
import type { RoutingTable } from '../src/membership/routing-table'
import { writeApplied, type BatchOpWire } from '../src/protocol/batch'
import { COALESCED_VALUE_BYTES } from '../src/protocol/limits'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import { readShardBatchReply } from './batch-results'
import type { ForwardRequest, ForwardResult, Forwarder, KvForward } from './forward'
import type { RouterMetrics } from './metrics'

/**
 * Write coalescing: the plain PUTs and DELETEs that reach the router in one turn of the
 * event loop go to each owner primary as one POST /batch, as read coalescing does for
 * GETs. The node commits a batch in one transaction, as its group commit would have
 * committed the same writes sent one by one; what coalescing saves is the per-request
 * cost of an upstream exchange — the router's HTTP client, the node's HTTP server and
 * its reply — which is most of the CPU a replicated write costs outside SQLite.
 *
 * It changes nothing a client can observe:
 * - Each op carries its client request's id as `rid`, and a batch carries one
 *   principal (writes of different principals never share one: the principal binds the
 *   request id). A write the batch did not certainly settle — the batch failed, timed
 *   out, was misdirected, or its op's result is anything but success — goes through the
 *   single-key Forwarder with the same request id: had the batch applied it, the node
 *   answers the retry with the first outcome and changes nothing.
 * - A successful result becomes the answer the single-key path relays: 201/200 with the
 *   ETag and `{"version": …}` for a PUT, 204 for a DELETE (see coalescedWriteResults).
 * - Conditional writes, writes with a TTL and values over COALESCED_VALUE_BYTES always
 *   take the single-key path, and so does every write to a key an unsettled rebalance
 *   is moving (copy on touch is its business). A lone write waits for no one.
 */

export interface WriteCoalescerOptions {
  forwarder: Forwarder
  /** Where every other request goes (the read coalescer). */
  next: KvForward
  table: () => RoutingTable
  /** Most writes in one upstream batch; 1 turns coalescing off. */
  maxKeys: number
  /** Most batches in flight to one primary (undefined: no limit; see src/membership/coalescing.ts). */
  maxInFlight?: number | undefined
  metrics: RouterMetrics
}

type Write = PendingOp<ForwardRequest, ForwardResult>

const JSON_CONTENT_TYPE = 'application/json'
/** The Content-Type a shard node gives its JSON answers (fastify's, for a string body). */
const SHARD_JSON_TYPE = 'application/json; charset=utf-8'
const EMPTY = Buffer.alloc(0)

/** Whether a request may share an upstream batch with others. */
export function coalescibleWrite (req: ForwardRequest): boolean {
  if (req.method !== 'PUT' && req.method !== 'DELETE') return false
  if (req.ifMatch !== undefined || req.ifNoneMatch !== undefined || req.ttl !== undefined || req.priorTimeouts !== undefined) return false
  return req.body === null || req.body.length <= COALESCED_VALUE_BYTES
}

/** A write as one op of the upstream batch, its request id as the op's `rid`. */
export function writeOp (req: ForwardRequest): BatchOpWire {
  if (req.method === 'DELETE') return { op: 'delete', key: req.key, rid: req.requestId }
  const op: BatchOpWire = { op: 'put', key: req.key, value: (req.body ?? EMPTY).toString('base64'), rid: req.requestId }
  if (req.contentType !== undefined) op.contentType = req.contentType
  return op
}

/**
 * A shard's answer to a coalesced batch of writes, as the answer each single write would
 * have relayed, for the writes whose result is a success; undefined for the others
 * (they go alone, with their request id).
 */
export function coalescedWriteResults (status: number, text: string, methods: ReadonlyArray<'PUT' | 'DELETE'>, node: string | undefined, url: string): Array<ForwardResult | undefined> {
  const reply = readShardBatchReply(status, text, methods.length, url)
  if (reply.kind !== 'ok') return []
  return reply.results.map((r, i): ForwardResult | undefined => {
    const method = methods[i] ?? 'PUT'
    if (!writeApplied(method, r)) return undefined
    if (method === 'DELETE') return { status: 204, contentType: undefined, contentLength: undefined, etag: undefined, node, body: EMPTY, retries: 0, tombstone: false }
    const etag = r.etag as string
    const body = Buffer.from(`{"version":${JSON.stringify(etag.slice(1, -1))}}`)
    return { status: r.status, contentType: SHARD_JSON_TYPE, contentLength: String(body.length), etag, node, body, retries: 0, tombstone: false }
  })
}

export class WriteCoalescer implements KvForward {
  private readonly queue: CoalescingQueue<ForwardRequest, ForwardResult>

  constructor (private readonly options: WriteCoalescerOptions) {
    this.queue = new CoalescingQueue({
      maxKeys: options.maxKeys,
      maxInFlight: options.maxInFlight,
      table: options.table,
      alone: (write) => { options.forwarder.forward(write.req).then(write.resolve, write.reject) },
      together: async (url, table, writes) => await this.batch(url, table, writes)
    })
  }

  forward (req: ForwardRequest): Promise<ForwardResult> {
    if (this.options.maxKeys < 2 || !coalescibleWrite(req)) return this.options.next.forward(req)
    return this.queue.enqueue(req.key, req, req.principal ?? '')
  }

  private async batch (url: string, table: RoutingTable, writes: readonly Write[]): Promise<Array<ForwardResult | undefined>> {
    this.options.metrics.countBatchUpstream('coalesced_writes')
    const principal = writes[0]?.req.principal
    const headers: Record<string, string> = { ...this.options.forwarder.peerHeaders, 'content-type': JSON_CONTENT_TYPE, [HEADER.epoch]: table.epochHeader }
    if (principal !== undefined) headers[HEADER.principal] = principal
    try {
      const res = await exchange(this.options.forwarder.pool(url), {
        path: BATCH_PATH,
        method: 'POST',
        headers,
        body: JSON.stringify({ ops: writes.map((w) => writeOp(w.req)) })
      })
      const node = res.headers[HEADER.node]
      return coalescedWriteResults(res.status, res.body.toString('utf8'), writes.map((w) => w.req.method as 'PUT' | 'DELETE'), typeof node === 'string' ? node : undefined, url)
    } catch (err) {
      // Every write goes alone with its request id; a timeout here counts as its one
      // allowed timeout, so a hung node is not waited on three times.
      if (classifyUpstreamError(err) === 'timeout') for (const w of writes) w.req = { ...w.req, priorTimeouts: 1 }
      return []
    }
  }
}
