import { BATCH_DEFAULTS, type BatchOpWire } from '../protocol/batch'
import { ShardKvError } from '../protocol/errors'
import { validateKey } from '../protocol/key'
import { DEFAULT_CONTENT_TYPE } from '../protocol/wire'
import { DirectTransport } from './direct'
import { KvError, toKvError } from './errors'
import { chunkOps, toDeleteResult, toEntry, toPutResult, type KvEntry, type OpResult, type PutResult } from './results'
import { RoutedTransport } from './routed'
import { newRequestId, type SingleRequest, type Transport } from './transport'
import { batchOpRequestId } from '../protocol/request-id'
import { parseTtl } from '../protocol/ttl'
import { watchEvents, type WatchConnection, type WatchEvent, type WatchOptions } from './watch'

/**
 * The shardkv client: get/put/delete and their batch forms over either transport
 * (routed: through a router; direct: straight to each key's primary). Single-key
 * calls throw a typed KvError; batch calls resolve with one result or error per item,
 * in the caller's order, and reject only when the batch is refused as a whole (a 4xx
 * such as value_too_large). Keys are checked before anything is sent; a server-side
 * refusal means nothing of that request was applied — but a batch split into several
 * requests (over maxBatchOps, or per group in direct mode) may have had its other
 * requests applied.
 */

export type ClientMode = 'routed' | 'direct'

export interface ClientOptions {
  /** The router's base URL (direct mode loads the cluster map from it). */
  url: string
  mode?: ClientMode
  /** Kept-alive connections per pool (the router's, or each node's in direct mode). Default 16. */
  connections?: number
  /** How long a call keeps retrying refused connections and map changes. Default 5000 ms. */
  retryTimeoutMs?: number
  /** Longest wait for a response's headers, or between body chunks. Default 10000 ms. */
  timeoutMs?: number
  /** Ops per batch request (larger batches are split). Default 1000, the servers' default limit. */
  maxBatchOps?: number
  /** About this many bytes of JSON per batch request. Default 16 MiB, the servers' default limit. */
  maxBatchBytes?: number
  /**
   * Direct mode: most concurrent get() calls for one primary sent as one batch of gets
   * (they answer exactly as single GETs). Default 64; 1 sends every get alone.
   */
  readCoalesceMaxKeys?: number
  /**
   * Direct mode: most concurrent unconditional put() and delete() calls (no TTL, values up
   * to 16 KiB) for one primary sent as one batch, each op with its request id; they answer
   * exactly as single writes. Default 64; 1 sends every write alone.
   */
  writeCoalesceMaxKeys?: number
  /**
   * Direct mode: most coalesced batches of gets (and, apart, of writes) in flight to one
   * primary; calls for a primary at its limit wait for one to end and go in the next
   * batch. Default 1; 0: no limit (every turn's batch is sent at once).
   */
  coalesceInFlight?: number
  /** A client token (`skv_...`): sent as `Authorization: Bearer` on every request, to the router and (direct mode) to shard nodes. */
  token?: string
  /** PEM CA bundle that https servers' certificates must chain to (a private CA, a self-signed certificate). */
  ca?: string | Buffer
}

export interface PutOptions {
  contentType?: string
  /** An ETag (quotes included) or '*': write only if the current version matches. */
  ifMatch?: string
  /** '*': write only if the key has no value. */
  ifNoneMatch?: '*'
  /** Seconds the value lives (at most 3 decimals); it reads as absent from then on. */
  ttl?: number
}

export interface DeleteOptions {
  ifMatch?: string
}

export interface PutItem extends PutOptions {
  key: string
  value: Buffer | string
}

export interface DeleteItem extends DeleteOptions {
  key: string
}

export interface ClientStats {
  mode: ClientMode
  /** Requests sent per base URL (router or node), retries included. */
  requests: Record<string, number>
  /** GET /cluster fetches (direct mode). */
  mapFetches: number
  /** Maps that reached the client by following its router's map (direct mode), without a fetch. */
  mapsFollowed: number
  /** The map epoch routed by (direct mode, once loaded). */
  epoch: number | undefined
  /** Nodes the client holds a connection pool to (direct mode); those that left the map are closed. */
  openPools: string[]
}

function checkKey (key: string): void {
  if (typeof key !== 'string') throw new KvError('invalid_key', 'a key is a string')
  try {
    validateKey(key)
  } catch (err) {
    throw err instanceof ShardKvError ? toKvError(err) : err
  }
}

function asBuffer (value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value
}

/** The TTL as the wire carries it; a bad one is refused here, before anything is sent. */
function checkedTtl (ttl: number | undefined): number | undefined {
  if (ttl === undefined) return undefined
  try {
    parseTtl(ttl, 'ttl')
  } catch (err) {
    throw err instanceof ShardKvError ? toKvError(err) : err
  }
  return ttl
}

function orThrow<T> (r: T | KvError): T {
  if (r instanceof KvError) throw r
  return r
}

export class KvClient {
  readonly mode: ClientMode
  private readonly transport: Transport
  private readonly maxBatchOps: number
  private readonly maxBatchBytes: number
  private readonly watchConnection: WatchConnection

  constructor (options: ClientOptions) {
    this.mode = options.mode ?? 'routed'
    const common = {
      connections: options.connections ?? 16,
      retryTimeoutMs: options.retryTimeoutMs ?? 5000,
      timeoutMs: options.timeoutMs ?? 10_000,
      credentials: { token: options.token, ca: options.ca }
    }
    if (this.mode === 'direct') this.transport = new DirectTransport({ routerUrl: options.url, readCoalesceMaxKeys: options.readCoalesceMaxKeys ?? 64, writeCoalesceMaxKeys: options.writeCoalesceMaxKeys ?? 64, coalesceInFlight: options.coalesceInFlight ?? 1, ...common })
    else if (this.mode === 'routed') this.transport = new RoutedTransport(options.url, common)
    else throw new TypeError(`mode must be 'routed' or 'direct', not ${String(options.mode)}`)
    this.maxBatchOps = options.maxBatchOps ?? BATCH_DEFAULTS.maxOps
    this.maxBatchBytes = options.maxBatchBytes ?? BATCH_DEFAULTS.maxBytes
    this.watchConnection = { url: options.url, credentials: common.credentials, retryTimeoutMs: common.retryTimeoutMs, timeoutMs: common.timeoutMs }
  }

  /**
   * The changes under `prefix` as they become durable, from `since` (default: now), from
   * the router in either mode (src/client/watch.ts): at least once, per key in commit order.
   */
  watch (options: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    return watchEvents(this.watchConnection, options)
  }

  /** The value, its content type and ETag; NotFoundError when the key has none. */
  async get (key: string): Promise<KvEntry> {
    checkKey(key)
    // A read changes nothing, so it needs no request id to be retried safely.
    return orThrow(toEntry(await this.transport.send({ method: 'GET', key })))
  }

  async put (key: string, value: Buffer | string, options: PutOptions = {}): Promise<PutResult> {
    checkKey(key)
    const req: SingleRequest = { method: 'PUT', key, body: asBuffer(value), contentType: options.contentType ?? DEFAULT_CONTENT_TYPE, requestId: newRequestId() }
    if (options.ifMatch !== undefined) req.ifMatch = options.ifMatch
    if (options.ifNoneMatch !== undefined) req.ifNoneMatch = options.ifNoneMatch
    const ttl = checkedTtl(options.ttl)
    if (ttl !== undefined) req.ttl = String(ttl)
    return orThrow(toPutResult(await this.transport.send(req)))
  }

  /** Deletes the key (also when it has no value); PreconditionFailedError when `ifMatch` fails. */
  async delete (key: string, options: DeleteOptions = {}): Promise<void> {
    checkKey(key)
    const req: SingleRequest = { method: 'DELETE', key, requestId: newRequestId() }
    if (options.ifMatch !== undefined) req.ifMatch = options.ifMatch
    orThrow(toDeleteResult(await this.transport.send(req)))
  }

  /** One entry per key, in order; a NotFoundError (or another KvError) where there is none. */
  async getMany (keys: readonly string[]): Promise<Array<KvEntry | KvError>> {
    const results = await this.batch(keys.map((key) => ({ op: 'get', key })))
    return results.map(toEntry)
  }

  async putMany (items: readonly PutItem[]): Promise<Array<PutResult | KvError>> {
    const ops = items.map((it): BatchOpWire => {
      const op: BatchOpWire = { op: 'put', key: it.key, value: asBuffer(it.value).toString('base64'), contentType: it.contentType ?? DEFAULT_CONTENT_TYPE }
      if (it.ifMatch !== undefined) op.ifMatch = it.ifMatch
      if (it.ifNoneMatch !== undefined) op.ifNoneMatch = it.ifNoneMatch
      const ttl = checkedTtl(it.ttl)
      if (ttl !== undefined) op.ttl = ttl
      return op
    })
    return (await this.batch(ops)).map(toPutResult)
  }

  /** `undefined` for each key deleted (or already absent), a KvError where it failed. */
  async deleteMany (items: ReadonlyArray<string | DeleteItem>): Promise<Array<KvError | undefined>> {
    const ops = items.map((it): BatchOpWire => {
      if (typeof it === 'string') return { op: 'delete', key: it }
      const op: BatchOpWire = { op: 'delete', key: it.key }
      if (it.ifMatch !== undefined) op.ifMatch = it.ifMatch
      return op
    })
    return (await this.batch(ops)).map(toDeleteResult)
  }

  stats (): ClientStats {
    const direct = this.transport instanceof DirectTransport ? this.transport : undefined
    return {
      mode: this.mode,
      requests: this.transport.requestCounts(),
      mapFetches: direct?.maps.fetches ?? 0,
      mapsFollowed: direct?.maps.followed ?? 0,
      epoch: direct?.maps.peek()?.epoch,
      openPools: direct?.openPools() ?? []
    }
  }

  async close (): Promise<void> {
    await this.transport.close()
  }

  /**
   * Sends ops in chunks the servers accept, every op with its rid `<batch id>-<index>`
   * (index in the caller's list), so a resent chunk applies each write once.
   */
  private async batch (ops: BatchOpWire[]): Promise<OpResult[]> {
    if (ops.length === 0) return []
    for (const op of ops) checkKey(op.key)
    const batchId = newRequestId()
    ops.forEach((op, i) => { op.rid = batchOpRequestId(batchId, i) })
    const chunks = chunkOps(ops, this.maxBatchOps, this.maxBatchBytes)
    const parts = await Promise.all(chunks.map(async (c) => await this.transport.batch(c.ops, chunks.length === 1 ? batchId : `${batchId}-c${c.start}`)))
    return parts.flat()
  }
}

export function createClient (options: ClientOptions): KvClient {
  return new KvClient(options)
}
