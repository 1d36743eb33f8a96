import { Pool, type Dispatcher } from '../http/undici'
import type { BatchOpWire, BatchResult } from '../protocol/batch'
import { kvPath } from '../protocol/key'
import { BATCH_PATH, HEADER } from '../protocol/wire'
import { exchange, type RawResponse } from '../http/exchange'
import { UnavailableError } from './errors'
import { errorOf, fromBatchResult, fromHttp, type OpResult } from './results'
import {
  Backoff, RequestCounter, clientPoolOptions, credentialHeaders, sleep,
  type Credentials, type SingleRequest, type Transport
} from './transport'
import { classifyUpstreamError, describeUpstreamError, upstreamErrorCode } from '../http/upstream-errors'

/**
 * Routed mode: every call goes to one router over one kept-alive pool; the router
 * finds the owner, follows map changes and failovers, and retries upstream.
 *
 * A call whose connection failed (refused, reset, closed) is repeated within
 * retryTimeoutMs: every request carries the call's request id, which the router passes
 * on to the shard (for a batch, as the prefix of each op's id), so a repeated write is
 * applied once. A timeout is not repeated: the router may still be working on it.
 */

export interface RoutedOptions {
  connections: number
  retryTimeoutMs: number
  /** Per request: the longest wait for response headers and between body chunks. */
  timeoutMs: number
  counter?: RequestCounter
  credentials?: Credentials
}

type Headers = Record<string, string>

export function singleHeaders (req: SingleRequest, auth: Readonly<Headers>): Headers {
  const h: Headers = { ...auth }
  if (req.requestId !== undefined) h[HEADER.requestId] = req.requestId
  if (req.method === 'PUT' && req.contentType !== undefined) h['content-type'] = req.contentType
  if (req.ifMatch !== undefined) h['if-match'] = req.ifMatch
  if (req.ifNoneMatch !== undefined) h['if-none-match'] = req.ifNoneMatch
  if (req.method === 'PUT' && req.ttl !== undefined) h[HEADER.ttl] = req.ttl
  return h
}

export class RoutedTransport implements Transport {
  readonly url: string
  private readonly pool: Pool
  private readonly counter: RequestCounter
  private readonly auth: Readonly<Headers>
  private closed = false

  constructor (url: string, private readonly options: RoutedOptions) {
    this.url = new URL(url).origin
    this.pool = new Pool(this.url, clientPoolOptions(options.connections, options.timeoutMs, options.credentials))
    this.auth = credentialHeaders(options.credentials)
    this.counter = options.counter ?? new RequestCounter()
  }

  async send (req: SingleRequest): Promise<OpResult> {
    const res = await this.call({
      path: kvPath(req.key),
      method: req.method,
      headers: singleHeaders(req, this.auth),
      body: req.method === 'PUT' ? req.body ?? Buffer.alloc(0) : null
    })
    return fromHttp(res.status, res.headers, res.body)
  }

  async batch (ops: BatchOpWire[], batchId: string): Promise<OpResult[]> {
    const res = await this.call({
      path: BATCH_PATH,
      method: 'POST',
      headers: { ...this.auth, 'content-type': 'application/json', [HEADER.requestId]: batchId },
      body: JSON.stringify({ ops })
    })
    return batchResults(res, ops.length)
  }

  requestCounts (): Record<string, number> {
    return this.counter.snapshot()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pool.close()
  }

  private async call (opts: Dispatcher.DispatchOptions): Promise<RawResponse> {
    const backoff = new Backoff(Date.now() + this.options.retryTimeoutMs)
    for (;;) {
      if (this.closed) throw new UnavailableError('unavailable', 'the client is closed')
      this.counter.add(this.url)
      try {
        return await exchange(this.pool, opts)
      } catch (err) {
        const kind = classifyUpstreamError(err)
        const wait = kind === 'retry' ? backoff.step() : undefined
        if (wait === undefined) {
          throw new UnavailableError(kind === 'timeout' ? 'upstream_timeout' : 'unavailable',
            `router ${this.url}: ${describeUpstreamError(err)}`, { cause: upstreamErrorCode(err) })
        }
        await sleep(wait)
      }
    }
  }
}

/** A batch response (router or shard node) as one OpResult per op; a whole-batch refusal throws. */
export function batchResults (res: { status: number, body: Buffer }, count: number): OpResult[] {
  const single = fromHttp(res.status, {}, res.body)
  // A server failure leaves every op without an answer (each its own error); a 4xx is
  // a refusal of the batch as a whole, where nothing was applied.
  if (res.status >= 500) return Array.from({ length: count }, () => single)
  if (res.status !== 200) throw errorOf(single)
  let parsed: { results?: unknown }
  try {
    parsed = JSON.parse(res.body.toString('utf8')) as { results?: unknown }
  } catch {
    throw new UnavailableError('upstream_error', 'the batch response is not JSON', undefined, 502)
  }
  if (!Array.isArray(parsed.results) || parsed.results.length !== count) {
    throw new UnavailableError('upstream_error', `the batch response has ${Array.isArray(parsed.results) ? parsed.results.length : 'no'} results for ${count} ops`, undefined, 502)
  }
  return (parsed.results as BatchResult[]).map(fromBatchResult)
}
