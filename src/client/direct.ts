import { Pool } from '../http/undici'
import { planBatch } from '../membership/batch-plan'
import { CoalescingQueue, type PendingOp } from '../membership/coalescing'
import type { RoutingTable } from '../membership/routing-table'
import type { BatchOpWire } from '../protocol/batch'
import { kvPath } from '../protocol/key'
import { COALESCED_VALUE_BYTES } from '../protocol/limits'
import { batchOpRequestId } from '../protocol/request-id'
import { BATCH_PATH, HEADER } from '../protocol/wire'
import { exchange } from '../http/exchange'
import { KvError, UnavailableError } from './errors'
import { MapSource } from './map-source'
import { coalescedGetResults, coalescedWriteResults, fromHttp, unavailableResult, type OpResult } from './results'
import { batchResults, RoutedTransport, singleHeaders } from './routed'
import {
  Backoff, clientPoolOptions, credentialHeaders, type Credentials, RequestCounter, sleep,
  type KvMethod, type SingleRequest, type Transport
} from './transport'
import { classifyUpstreamError, describeUpstreamError, type UpstreamFailure } from '../http/upstream-errors'

/**
 * Direct mode (peer-to-peer load balancing): the client hashes each key onto the ring
 * of the map it loaded from the router's GET /cluster — the same RoutingTable code the
 * router uses — and sends the request straight to the owning group's primary over a
 * kept-alive pool per node, carrying its map epoch and a request id.
 *
 * Correctness does not rest on the client's map being current: a node checks every
 * request against the map installed on it, and refuses (421) keys it does not own and
 * everything once it is no longer primary or its lease has run out. On a 421 or a
 * connection that fails (a primary killed in a failover) the client refreshes the map
 * (single-flight, see MapSource) and retries, backing off, for up to retryTimeoutMs;
 * the request id, the same on every attempt, makes the node apply a write once.
 *
 * Keys that an unsettled rebalance is moving go through the router instead: their new
 * owner may not hold them yet, and only the router does the fallback read from the
 * old owner and the copy on touch before a conditional write.
 */

export interface DirectOptions {
  routerUrl: string
  /** Most concurrent plain GETs for one primary sent as one batch; 1: every GET alone. */
  readCoalesceMaxKeys: number
  /** Most concurrent plain PUTs and DELETEs for one primary sent as one batch; 1: every write alone. */
  writeCoalesceMaxKeys: number
  /** Most coalesced batches in flight to one primary, reads and writes apart; 0: no limit. */
  coalesceInFlight: number
  connections: number
  retryTimeoutMs: number
  timeoutMs: number
  credentials?: Credentials
}

const METHOD_OF: Record<BatchOpWire['op'], KvMethod> = { get: 'GET', put: 'PUT', delete: 'DELETE' }
const EMPTY = Buffer.alloc(0)

/** A write that may share a batch: unconditional, no TTL, a request id, a small value. */
function coalescible (req: SingleRequest): boolean {
  if (req.method !== 'PUT' && req.method !== 'DELETE') return false
  if (req.requestId === undefined || req.ifMatch !== undefined || req.ifNoneMatch !== undefined || req.ttl !== undefined) return false
  return req.body === undefined || req.body.length <= COALESCED_VALUE_BYTES
}

/** A write as one op of a batch, its request id as the op's `rid`. */
function writeOp (req: SingleRequest): BatchOpWire {
  if (req.method === 'DELETE') return { op: 'delete', key: req.key, rid: req.requestId }
  return { op: 'put', key: req.key, value: (req.body ?? EMPTY).toString('base64'), contentType: req.contentType, rid: req.requestId }
}

export class DirectTransport implements Transport {
  readonly maps: MapSource
  private readonly router: RoutedTransport
  private readonly controlPool: Pool
  private readonly pools = new Map<string, Pool>()
  private readonly counter = new RequestCounter()
  private closed = false
  /** The headers of a plain GET (only the epoch) for the table they were built for. */
  private plainTable: RoutingTable | undefined
  private plainHeaders: Record<string, string> = {}
  private readonly reads: CoalescingQueue<SingleRequest, OpResult>
  private readonly writes: CoalescingQueue<SingleRequest, OpResult>
  /** The token's header, on /cluster reads and on every request to a shard node too. */
  private readonly auth: Readonly<Record<string, string>>

  constructor (private readonly options: DirectOptions) {
    const routerUrl = new URL(options.routerUrl).origin
    this.auth = credentialHeaders(options.credentials)
    this.router = new RoutedTransport(routerUrl, { ...options, counter: this.counter })
    const ca = options.credentials?.ca
    this.controlPool = new Pool(routerUrl, { connections: 2, pipelining: 1, ...(ca === undefined ? {} : { connect: { ca } }) })
    this.maps = new MapSource(routerUrl, this.controlPool, options.timeoutMs, this.auth, ca)
    this.maps.onChange((table) => { this.closePoolsOutside(table) })
    const maxInFlight = options.coalesceInFlight === 0 ? undefined : options.coalesceInFlight
    this.reads = new CoalescingQueue({
      maxKeys: options.readCoalesceMaxKeys,
      maxInFlight,
      table: () => this.maps.now(),
      alone: (read) => { this.sendOne(read.req).then(read.resolve, read.reject) },
      together: async (url, table, reads) => await this.readTogether(url, table, reads)
    })
    this.writes = new CoalescingQueue({
      maxKeys: options.writeCoalesceMaxKeys,
      maxInFlight,
      table: () => this.maps.now(),
      alone: (write) => { this.sendOne(write.req).then(write.resolve, write.reject) },
      together: async (url, table, writes) => await this.writeTogether(url, table, writes)
    })
  }

  /**
   * Plain GETs made in one turn of the event loop go to each primary as one POST /batch
   * of gets (auto-pipelining, as ioredis does it), answered exactly as single GETs: only
   * values and absences are taken from the batch; any other outcome, and keys a rebalance
   * is moving, go through the single-key path with its retries. A lone GET goes alone.
   * Plain PUTs and DELETEs are coalesced the same way, as the router does it: each op
   * carries its request id, only certain successes are taken from the batch, and any
   * other write goes alone with the same id (applied once either way).
   */
  async send (req: SingleRequest): Promise<OpResult> {
    if (coalescible(req) && this.options.writeCoalesceMaxKeys > 1) return await this.writes.enqueue(req.key, req)
    if (req.method !== 'GET' || this.options.readCoalesceMaxKeys < 2 || req.ifMatch !== undefined || req.ifNoneMatch !== undefined) return await this.sendOne(req)
    return await this.reads.enqueue(req.key, req)
  }

  private async writeTogether (url: string, table: RoutingTable, writes: ReadonlyArray<PendingOp<SingleRequest, OpResult>>): Promise<Array<OpResult | undefined>> {
    const res = await this.postBatch(url, table, writes.map((w) => writeOp(w.req)))
    return coalescedWriteResults(res.status, res.body, writes.map((w) => w.req.method as 'PUT' | 'DELETE'))
  }

  /**
   * One coalesced batch to a primary. A failed exchange throws: every op then goes alone,
   * and the single-key path retries, refreshes the map or gives up, as for any call.
   */
  private async postBatch (url: string, table: RoutingTable, ops: BatchOpWire[]): Promise<{ status: number, body: Buffer }> {
    this.counter.add(url)
    const res = await exchange(this.pool(url), {
      path: BATCH_PATH,
      method: 'POST',
      headers: { ...this.auth, 'content-type': 'application/json', [HEADER.epoch]: table.epochHeader },
      body: JSON.stringify({ ops })
    })
    if (res.status === 421 || (res.status === 200 && res.body.includes('"map":'))) this.maps.offer(mapOf(res.body))
    return res
  }

  private async readTogether (url: string, table: RoutingTable, reads: ReadonlyArray<PendingOp<SingleRequest, OpResult>>): Promise<Array<OpResult | undefined>> {
    const res = await this.postBatch(url, table, reads.map((r) => ({ op: 'get', key: r.key })))
    return coalescedGetResults(res.status, res.body, reads.length)
  }

  private async sendOne (req: SingleRequest): Promise<OpResult> {
    const deadline = Date.now() + this.options.retryTimeoutMs
    // Made on the first failure: most calls never need one.
    let backoff: Backoff | undefined
    const path = kvPath(req.key)
    const body = req.method === 'PUT' ? req.body ?? EMPTY : null
    let last = ''
    let lastKind: UpstreamFailure | '421' = '421'
    for (;;) {
      const table = this.maps.now() ?? await this.maps.current()
      // A moving key: the router reads it with fallback and copies it on touch (see above).
      if (table.handoverSourceOf(req.key) !== undefined) return await this.router.send(req)
      const url = table.ownerOf(req.key)
      if (url === undefined) {
        last = 'no group is on the ring'
      } else {
        try {
          this.counter.add(url)
          const res = await exchange(this.pool(url), { path, method: req.method, body, headers: this.headers(req, table) })
          if (res.status !== 421) return fromHttp(res.status, res.headers, res.body)
          this.maps.offer(mapOf(res.body))
          lastKind = '421'
          last = `${url} answered 421 (${res.body.toString('utf8').slice(0, 160)})`
        } catch (err) {
          lastKind = classifyUpstreamError(err)
          if (lastKind === 'fatal') throw new UnavailableError('upstream_error', `${url}: ${describeUpstreamError(err)}`, undefined, 502)
          last = `${url}: ${describeUpstreamError(err)}`
        }
      }
      backoff ??= new Backoff(deadline)
      await this.waitForMap(table, backoff, lastKind, last)
    }
  }

  async batch (ops: BatchOpWire[], batchId: string): Promise<OpResult[]> {
    const results: Array<OpResult | undefined> = new Array(ops.length)
    const keys = ops.map((o) => o.key)
    const backoff = new Backoff(Date.now() + this.options.retryTimeoutMs)
    let todo: number[] | undefined
    for (;;) {
      const table = await this.maps.current()
      const plan = planBatch(table, keys, todo)
      const again: number[] = [...plan.unowned]
      let refusal: KvError | undefined
      const jobs: Array<Promise<void>> = []
      for (const [url, indexes] of plan.byPrimary) {
        jobs.push(this.subBatch(url, table, ops, indexes, batchId, results, again).catch((err: unknown) => {
          refusal ??= err instanceof KvError ? err : new UnavailableError('upstream_error', describeUpstreamError(err), undefined, 502)
        }))
      }
      // Moving keys, one at a time through the router's single-key path (see above).
      for (const i of plan.single) jobs.push(this.viaRouter(ops[i] as BatchOpWire, batchId, i).then((r) => { results[i] = r }))
      await Promise.all(jobs)
      // A refusal of a sub-batch as a whole (it is malformed or over a limit) is the caller's error.
      if (refusal !== undefined) throw refusal
      if (again.length === 0) break
      todo = again.sort((a, b) => a - b)
      try {
        await this.waitForMap(table, backoff, '421', `${todo.length} op(s) were refused or not answered`)
      } catch (err) {
        const message = (err as Error).message
        for (const i of todo) results[i] = unavailableResult(message)
        break
      }
    }
    return results as OpResult[]
  }

  requestCounts (): Record<string, number> {
    return this.counter.snapshot()
  }

  openPools (): string[] {
    return [...this.pools.keys()]
  }

  /** The router's URL in requestCounts(). */
  get routerUrl (): string {
    return this.router.url
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.all([this.maps.close(), this.router.close(), this.controlPool.close(), ...pools.map(async (p) => { await p.close() })])
  }

  /**
   * After a refused or failed attempt: refresh the map (single-flight) and retry at
   * once if it moved, else back off. Throws UnavailableError when the budget is spent.
   */
  private async waitForMap (table: RoutingTable, backoff: Backoff, kind: UpstreamFailure | '421', last: string): Promise<void> {
    if (this.closed) throw new UnavailableError('unavailable', 'the client is closed')
    const wait = backoff.step()
    if (wait === undefined) {
      const code = kind === 'timeout' ? 'upstream_timeout' : 'unavailable'
      throw new UnavailableError(code, `no owner answered within ${this.options.retryTimeoutMs} ms; last: ${last}`)
    }
    const next = await this.maps.refresh(table.epoch)
    if (next.epoch === table.epoch) await sleep(wait)
  }

  private async subBatch (
    url: string, table: RoutingTable, ops: readonly BatchOpWire[], indexes: number[], batchId: string,
    results: Array<OpResult | undefined>, again: number[]
  ): Promise<void> {
    this.counter.add(url)
    let status: number
    let data: Buffer
    try {
      const res = await exchange(this.pool(url), {
        path: BATCH_PATH,
        method: 'POST',
        headers: { ...this.auth, 'content-type': 'application/json', [HEADER.epoch]: table.epochHeader, [HEADER.requestId]: batchId },
        body: JSON.stringify({ ops: indexes.map((i) => ops[i]) })
      })
      status = res.status
      data = res.body
    } catch (err) {
      if (classifyUpstreamError(err) === 'fatal') {
        for (const i of indexes) results[i] = unavailableResult(`${url}: ${describeUpstreamError(err)}`)
      } else {
        // Every op carries its rid: resending applies each write once.
        again.push(...indexes)
      }
      return
    }
    // The node is not (or no longer) primary: the whole share goes again under a fresh map.
    if (status === 421) {
      this.maps.offer(mapOf(data))
      again.push(...indexes)
      return
    }
    if (status === 200 && data.includes('"map":')) this.maps.offer(mapOf(data))
    const rs = batchResults({ status, body: data }, indexes.length)
    for (let j = 0; j < indexes.length; j++) {
      const i = indexes[j] as number
      const r = rs[j] as OpResult
      // Per-op 421: the node does not own this key under its map; re-plan it.
      if (r.status === 421) again.push(i)
      else results[i] = r
    }
  }

  private async viaRouter (op: BatchOpWire, batchId: string, index: number): Promise<OpResult> {
    const req: SingleRequest = { method: METHOD_OF[op.op], key: op.key, requestId: op.rid ?? batchOpRequestId(batchId, index) }
    if (op.value !== undefined) req.body = Buffer.from(op.value, 'base64')
    if (op.contentType !== undefined) req.contentType = op.contentType
    if (op.ifMatch !== undefined) req.ifMatch = op.ifMatch
    if (op.ifNoneMatch !== undefined) req.ifNoneMatch = op.ifNoneMatch
    if (op.ttl !== undefined) req.ttl = String(op.ttl)
    try {
      return await this.router.send(req)
    } catch (err) {
      if (err instanceof KvError) return { status: err.status, error: err.toBody() }
      throw err
    }
  }

  /** A single-key request's headers: a plain GET's are built once per map, not per call. */
  private headers (req: SingleRequest, table: RoutingTable): Record<string, string> {
    if (req.method === 'GET' && req.requestId === undefined && req.ifMatch === undefined && req.ifNoneMatch === undefined) {
      if (this.plainTable !== table) {
        this.plainHeaders = Object.freeze({ ...this.auth, [HEADER.epoch]: table.epochHeader }) as Record<string, string>
        this.plainTable = table
      }
      return this.plainHeaders
    }
    const h = singleHeaders(req, this.auth)
    h[HEADER.epoch] = table.epochHeader
    return h
  }

  /**
   * Closes the pools of nodes that left the map (a removed group, a replaced node), so a
   * long-lived client does not keep their sockets. A request in flight on one finishes:
   * close() is graceful, and a pool is only ever taken and dispatched on in the same tick.
   */
  private closePoolsOutside (table: RoutingTable): void {
    const members = new Set<string>()
    for (const g of table.map.groups) for (const n of g.nodes) members.add(n.url)
    for (const [url, pool] of this.pools) {
      if (members.has(url)) continue
      this.pools.delete(url)
      pool.close().catch(() => undefined)
    }
  }

  private pool (url: string): Pool {
    let pool = this.pools.get(url)
    if (pool === undefined) {
      if (this.closed) throw new UnavailableError('unavailable', 'the client is closed')
      pool = new Pool(url, clientPoolOptions(this.options.connections, this.options.timeoutMs, this.options.credentials))
      this.pools.set(url, pool)
    }
    return pool
  }
}

/** The `map` of a 421 body or of a batch answer with misdirected ops (undefined when absent or not JSON). */
function mapOf (body: Buffer): unknown {
  try {
    return (JSON.parse(body.toString('utf8')) as { map?: unknown }).map
  } catch {
    return undefined
  }
}
