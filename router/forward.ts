import { setTimeout as sleep } from 'node:timers/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { Pool, type PoolOptions } from '../src/http/undici'
import { exchange, poolOptions } from '../src/http/exchange'
import type { Logger } from '../src/log'
import { ShardKvError, type ErrorCode } from '../src/protocol/errors'
import { kvPath } from '../src/protocol/key'
import { HEADER } from '../src/protocol/wire'
import type { RouterMetrics } from './metrics'
import type { RoutingTable } from '../src/membership/routing-table'
import type { NodeClient } from '../src/peer/node-client'
import { classifyUpstreamError, describeUpstreamError } from '../src/http/upstream-errors'
import { withPeerTls, type PeerTls } from '../src/auth/tls'

/**
 * The data plane: one kept-alive undici Pool per shard node, and the retry loop.
 *
 * Every attempt re-reads the routing table, so a request that waits out a failure
 * follows a map change made meanwhile. Only connection-level failures are retried:
 * the request id (one per client request, the same on every attempt) lets the shard
 * answer a repeated write with the original result, which makes retrying a PUT or
 * DELETE, conditional or not, as safe as retrying a GET. Anything the shard answered
 * — including its 4xx/5xx JSON errors — is relayed unchanged.
 */

export type KvMethod = 'GET' | 'HEAD' | 'PUT' | 'DELETE'

export interface ForwardRequest {
  method: KvMethod
  key: string
  /** Sent as x-shardkv-request-id on every attempt. */
  requestId: string
  /** The value, for PUT; null otherwise. */
  body: Buffer | null
  contentType: string | undefined
  ifMatch: string | undefined
  ifNoneMatch: string | undefined
  /** Upstream timeouts this request already met elsewhere (a coalesced read's batch): at most one is retried. */
  priorTimeouts?: number
  /** The authenticated client it is made for (sent as x-shardkv-principal: it binds the request id). */
  principal?: string
  /** A PUT's X-Shardkv-TTL, checked already (the shard turns it into an expiry). */
  ttl?: string
}

/** What serves a data request: the Forwarder itself, or the ReadCoalescer in front of it. */
export interface KvForward {
  forward: (req: ForwardRequest) => Promise<ForwardResult>
}

export interface ForwardResult {
  status: number
  contentType: string | undefined
  contentLength: string | undefined
  etag: string | undefined
  node: string | undefined
  body: Buffer
  /** Attempts beyond the first. */
  retries: number
  /** A 404 that comes from a tombstone (the key was deleted here, or expired): no fallback read. */
  tombstone: boolean
  /** A GET's remaining X-Shardkv-TTL (undefined: the value does not expire). */
  ttl?: string
}

export interface ForwarderOptions {
  /** The current routing table; called once per attempt. */
  table: () => RoutingTable
  /**
   * Calls the listener once, when the routing table is next replaced (returns a cancel):
   * a retry waiting out a failover or a switchover tries again as the new map arrives
   * instead of sleeping out its back-off. Absent: back-off only.
   */
  onceMapChanged?: (listener: () => void) => () => void
  connections: number
  upstreamTimeoutMs: number
  retryTimeoutMs: number
  metrics: RouterMetrics
  log: Logger
  /** Control-plane client, for copy on touch during a rebalance. */
  nodes: NodeClient
  /**
   * The cluster secret's header (src/auth/peer.ts), on every data request: a node with
   * a tokens file takes the router as a peer that has authorized its client already.
   */
  peerHeaders?: Readonly<Record<string, string>>
  /** The peer TLS (src/auth/tls.ts): what verifies shard nodes' HTTPS data ports, and what the router presents there. */
  peerTls?: PeerTls
}

const FIRST_BACKOFF_MS = 5
/** A copy-on-touch refused with these is routed again, like a 421 to the write itself. */
const REROUTED_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['misdirected', 'unavailable'])
const MAX_BACKOFF_MS = 100

type Headers = Record<string, string>

function header (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

export class Forwarder implements KvForward {
  private readonly options: ForwarderOptions
  private readonly pools = new Map<string, Pool>()
  private readonly poolOptions: PoolOptions
  private closed = false

  /** Headers every upstream data request carries (the peer secret), for the batch and coalescing paths too. */
  readonly peerHeaders: Readonly<Record<string, string>>

  constructor (options: ForwarderOptions) {
    this.options = options
    this.poolOptions = withPeerTls(poolOptions(options.connections, options.upstreamTimeoutMs), options.peerTls)
    this.peerHeaders = options.peerHeaders ?? {}
  }

  async forward (req: ForwardRequest): Promise<ForwardResult> {
    const path = kvPath(req.key)
    const headers = upstreamHeaders(req, this.options.peerHeaders)
    const pace = new RetryPace(this.options.retryTimeoutMs, this.options.metrics, this.options.onceMapChanged)
    let copiedAtEpoch = -1
    let timeouts = req.priorTimeouts ?? 0
    for (;;) {
      const table = this.options.table()
      const url = table.ownerOf(req.key)
      if (url === undefined) {
        throw new ShardKvError('unavailable', 'no shard group owns keys: the cluster map has no active groups', { epoch: table.epoch })
      }
      headers[HEADER.epoch] = table.epochHeader
      const source = table.handoverSourceOf(req.key)
      try {
        // Copy on touch: a write to a key whose copy has not reached its new owner would be
        // judged against nothing (a condition, or 201 Created for a key that exists), and a
        // retry of a write the old owner applied would not be recognised; so the key's row
        // (insert-if-absent) and the record of this request id are copied first.
        if (source !== undefined && copiedAtEpoch !== table.epoch && (req.method === 'PUT' || req.method === 'DELETE')) {
          if (!await this.copyOnTouch(req.key, req.requestId, source, url)) {
            // The new owner refused the copy as a 421 to the write itself would be refused
            // (its map or role moved: a failover, an epoch change): route again, invisibly.
            await pace.wait('misdirected', 'the new owner of this key did not take its copy')
            continue
          }
          copiedAtEpoch = table.epoch
        }
        let result = await this.attempt(this.pool(url), path, req, headers)
        // A key still being handed over may not have reached its new owner: read the old one.
        if (source !== undefined && result.status === 404 && !result.tombstone && (req.method === 'GET' || req.method === 'HEAD')) {
          result = await this.attempt(this.pool(source), path, req, { ...headers, [HEADER.fallback]: '1' })
        }
        if (result.status === 421) {
          // The node's map moved past ours (the coordinator publishes right after installing),
          // or ours past its (it is catching up): either way, wait briefly and route again.
          await pace.wait('misdirected', 'no owner answered for this key')
          continue
        }
        result.retries = pace.retries
        return result
      } catch (err) {
        if (err instanceof ShardKvError) throw err
        const kind = classifyUpstreamError(err)
        if (kind === 'timeout') {
          // Once: a connection handed to a worker that died before taking it is never
          // answered (Node's cluster round-robin keeps the handle), and the request id makes
          // a repeat safe. A node that is merely slow is not asked a third time.
          if (timeouts++ === 0 && !this.closed) {
            this.options.metrics.countRetry('timeout')
            pace.retries++
            continue
          }
          throw new ShardKvError('upstream_timeout', `shard ${url} did not answer within ${this.options.upstreamTimeoutMs} ms`)
        }
        if (kind === 'retry' && this.closed) {
          throw new ShardKvError('unavailable', `shard ${url} is unreachable (${describeUpstreamError(err)}) and the router is shutting down`)
        }
        if (kind !== 'retry') {
          this.options.log.error({ event: 'upstream-error', url, method: req.method, requestId: req.requestId, err }, 'shard request failed')
          throw new ShardKvError('upstream_error', `shard ${url} failed: ${describeUpstreamError(err)}`)
        }
        await pace.wait(describeUpstreamError(err, true), `shard ${url} is unreachable (${describeUpstreamError(err)})`)
      }
    }
  }

  /** Stops new upstream calls and waits for the ones in flight. */
  async close (): Promise<void> {
    this.closed = true
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.all(pools.map(async (p) => { await p.close() }))
  }

  /**
   * Copies the key's row and request record from the old owner to the new. False when a
   * node refused as a moving map or a failover makes it (421, 503): the caller routes
   * again. The import is insert-if-absent, so repeating it after a refusal is safe.
   */
  private async copyOnTouch (key: string, requestId: string, source: string, target: string): Promise<boolean> {
    try {
      const transfer = await this.options.nodes.keyTransfer(source, key, requestId)
      if (transfer.rows.length > 0 || transfer.requests.length > 0) await this.options.nodes.importKeys(target, transfer)
      return true
    } catch (err) {
      if (err instanceof ShardKvError && REROUTED_REFUSALS.has(err.code)) return false
      throw err
    }
  }

  /**
   * The kept-alive pool of one shard node, shared by every data-plane caller (the batch
   * forwarder sends its sub-batches over these too, so a node has one set of connections).
   * Throws `unavailable` once the router is shutting down.
   */
  pool (url: string): Pool {
    let pool = this.pools.get(url)
    if (pool === undefined) {
      if (this.closed) throw new ShardKvError('unavailable', 'the router is shutting down')
      pool = new Pool(url, this.poolOptions)
      this.pools.set(url, pool)
    }
    return pool
  }

  private async attempt (pool: Pool, path: string, req: ForwardRequest, headers: Headers): Promise<ForwardResult> {
    const res = await exchange(pool, { path, method: req.method, headers, body: req.body })
    return fromResponse(res.status, res.headers, res.body)
  }
}

/**
 * Back-off between routing attempts of one request, within its retry budget. A new map
 * ends the wait at once and starts the back-off afresh: what the request waited for
 * (a promoted primary, a settled switchover, the map a 421 pointed at) has most likely
 * just happened, and its first retry should not sit out a back-off grown during the outage.
 */
class RetryPace {
  retries = 0
  private backoff = FIRST_BACKOFF_MS
  private readonly deadline: number

  constructor (private readonly budgetMs: number, private readonly metrics: RouterMetrics, private readonly onceMapChanged?: (listener: () => void) => () => void) {
    this.deadline = Date.now() + budgetMs
  }

  /** Waits before the next attempt, or throws `unavailable` (saying why) once the budget is spent. */
  async wait (reason: string, why: string): Promise<void> {
    if (Date.now() + this.backoff > this.deadline) {
      throw new ShardKvError('unavailable', `${why}; gave up after ${this.retries} retries in ${this.budgetMs} ms`, { retries: this.retries })
    }
    this.retries++
    this.metrics.countRetry(reason)
    const woken = await this.pause(this.backoff)
    this.backoff = woken ? FIRST_BACKOFF_MS : Math.min(this.backoff * 2, MAX_BACKOFF_MS)
  }

  /** Sleeps `ms`, or less when the map changes first (true). */
  private async pause (ms: number): Promise<boolean> {
    if (this.onceMapChanged === undefined) {
      await sleep(ms)
      return false
    }
    const subscribe = this.onceMapChanged
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        cancel()
        resolve(false)
      }, ms)
      const cancel = subscribe(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }
}

function upstreamHeaders (req: ForwardRequest, peer: Readonly<Record<string, string>> | undefined): Headers {
  const h: Headers = peer === undefined ? { [HEADER.requestId]: req.requestId, [HEADER.epoch]: '' } : { ...peer, [HEADER.requestId]: req.requestId, [HEADER.epoch]: '' }
  if (req.principal !== undefined) h[HEADER.principal] = req.principal
  if (req.contentType !== undefined) h['content-type'] = req.contentType
  if (req.ifMatch !== undefined) h['if-match'] = req.ifMatch
  if (req.ifNoneMatch !== undefined) h['if-none-match'] = req.ifNoneMatch
  if (req.ttl !== undefined) h[HEADER.ttl] = req.ttl
  return h
}

function fromResponse (status: number, h: IncomingHttpHeaders, body: Buffer): ForwardResult {
  const ttl = header(h[HEADER.ttl])
  return {
    ...(ttl !== undefined ? { ttl } : {}),
    status,
    contentType: header(h['content-type']),
    contentLength: header(h['content-length']),
    etag: header(h.etag),
    node: header(h[HEADER.node]),
    body,
    retries: 0,
    tombstone: h[HEADER.tombstone] === '1'
  }
}
