import { Agent, request } from '../../http/undici'
import { readCapped } from '../../http/capped-body'
import { describeUpstreamError } from '../../http/upstream-errors'
import {
  b64, num, prefixEnd,
  type EtcdCompare, type EtcdErrorReply, type EtcdKeyValue, type EtcdLeaseGrantReply, type EtcdRangeReply, type EtcdRequestOp, type EtcdTxnReply
} from './wire'

/**
 * A thin etcd v3 client over the JSON gateway every etcd member serves on its client
 * URL (`/v3/...`). Chosen over the `etcd3` package (gRPC): it needs nothing but undici,
 * which shardkv already uses, its requests are plain HTTP that tests and operators can
 * repeat with curl, and it leaves leadership and lease safety to us rather than to a
 * library's events (etcd3's issues report two leaders after an etcd restart and lease
 * loss noticed only after two TTLs). Correctness never rests on this client: the
 * registry guards every change with a transaction compare.
 *
 * Several endpoints: a call goes to the current one and moves to the next when it cannot
 * be reached. Only calls that are safe to repeat are repeated; a write whose connection
 * failed after it was sent is reported as `ambiguous` (it may have applied), so the
 * caller re-reads instead of guessing.
 */

export type EtcdFailure = 'unreachable' | 'ambiguous' | 'refused'

export class EtcdError extends Error {
  constructor (readonly kind: EtcdFailure, message: string, readonly status?: number) {
    super(message)
    this.name = 'EtcdError'
  }
}

export interface EtcdGatewayOptions {
  /** Client URLs of the members, e.g. http://127.0.0.1:2379. */
  endpoints: readonly string[]
  /** Per-call budget (default 3000 ms). */
  timeoutMs?: number
}

export interface RangeOptions {
  prefix?: boolean
  /** Read at this revision (0: the latest). */
  revision?: number
  limit?: number
  /** Gives the read up when it fires (a deposed coordinator's term). */
  signal?: AbortSignal | undefined
}

export interface RangeResult {
  revision: number
  kvs: EtcdKeyValue[]
}

/** The most an answer of the gateway may hold (a map of hundreds of groups fits easily). */
const ANSWER_MAX_BYTES = 16 * 1024 * 1024

export class EtcdGateway {
  readonly endpoints: readonly string[]
  readonly timeoutMs: number
  readonly agent: Agent
  private current = 0

  constructor (opts: EtcdGatewayOptions) {
    if (opts.endpoints.length === 0) throw new Error('etcd: at least one endpoint is needed')
    this.endpoints = opts.endpoints.map((e) => e.replace(/\/+$/, ''))
    this.timeoutMs = opts.timeoutMs ?? 3000
    this.agent = new Agent({ connections: 8, keepAliveTimeout: 30_000, connectTimeout: Math.min(this.timeoutMs, 2000) })
  }

  /** The endpoint calls go to now (rotates when one cannot be reached). */
  endpoint (): string {
    return this.endpoints[this.current % this.endpoints.length] as string
  }

  rotate (): void {
    this.current = (this.current + 1) % this.endpoints.length
  }

  /**
   * One gateway call. `repeatable`: the call may be sent again after a connection
   * failure (reads, lease keep-alives); otherwise a failure after sending is ambiguous.
   * `signal` gives the call up at once (a write sent before is then ambiguous): without
   * it, a call to etcd without a quorum takes a timeout per endpoint.
   */
  async call<T> (path: string, body: unknown, repeatable: boolean, signal?: AbortSignal): Promise<T> {
    let lastError = ''
    const givenUp = (): boolean => signal?.aborted === true
    for (let tried = 0; tried < this.endpoints.length; tried++) {
      const base = this.endpoint()
      if (givenUp()) throw abandoned(path, false) // not sent (a write is tried again only after a failed connect)
      try {
        const res = await request(`${base}${path}`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
          dispatcher: this.agent,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
          ...(signal !== undefined ? { signal } : {})
        })
        const text = (await readCapped(res, ANSWER_MAX_BYTES, `etcd ${path}`)).toString('utf8')
        const parsed = (text === '' ? {} : JSON.parse(text)) as T & EtcdErrorReply
        if (res.statusCode >= 500 && repeatable) {
          // A member without a quorum answers 503-ish errors; another member may have one.
          lastError = `${base}: ${res.statusCode} ${parsed.message ?? parsed.error ?? ''}`
          this.rotate()
          continue
        }
        if (res.statusCode >= 400) throw new EtcdError(res.statusCode >= 500 ? 'ambiguous' : 'refused', `etcd ${path} at ${base}: ${res.statusCode} ${parsed.message ?? parsed.error ?? text.slice(0, 200)}`, res.statusCode)
        return parsed
      } catch (err) {
        if (err instanceof EtcdError) throw err
        if (givenUp()) throw abandoned(path, !repeatable)
        lastError = `${base}: ${describeUpstreamError(err)}`
        // Refused or never connected: the request never reached etcd; any member may take it.
        if (!repeatable && !isConnectFailure(err)) throw new EtcdError('ambiguous', `etcd ${path}: ${lastError} (the request may have applied)`)
        this.rotate()
      }
    }
    throw new EtcdError('unreachable', `etcd: no endpoint answered ${path} (${lastError})`)
  }

  async range (key: string, opts: RangeOptions = {}): Promise<RangeResult> {
    const body: Record<string, unknown> = { key: b64(key) }
    if (opts.prefix === true) body.range_end = prefixEnd(key)
    if (opts.revision !== undefined && opts.revision > 0) body.revision = String(opts.revision)
    if (opts.limit !== undefined) body.limit = String(opts.limit)
    const reply = await this.call<EtcdRangeReply>('/v3/kv/range', body, true, opts.signal)
    return { revision: num(reply.header?.revision), kvs: reply.kvs ?? [] }
  }

  /** A transaction: `success` runs when every compare holds, `failure` otherwise. */
  async txn (compare: EtcdCompare[], success: EtcdRequestOp[], failure: EtcdRequestOp[] = [], signal?: AbortSignal): Promise<EtcdTxnReply & { revision: number }> {
    const reply = await this.call<EtcdTxnReply>('/v3/kv/txn', { compare, success, failure }, false, signal)
    return { ...reply, revision: num(reply.header?.revision) }
  }

  async put (key: string, value: string, lease?: string): Promise<number> {
    const body: Record<string, unknown> = { key: b64(key), value: b64(value) }
    if (lease !== undefined) body.lease = lease
    const reply = await this.call<{ header?: { revision?: string } }>('/v3/kv/put', body, false)
    return num(reply.header?.revision)
  }

  async deleteRange (key: string, prefix = false): Promise<number> {
    const body: Record<string, unknown> = { key: b64(key) }
    if (prefix) body.range_end = prefixEnd(key)
    const reply = await this.call<{ deleted?: string }>('/v3/kv/deleterange', body, false)
    return num(reply.deleted)
  }

  /** A new lease of `ttlSeconds`; its id is a decimal string (64-bit). */
  async leaseGrant (ttlSeconds: number): Promise<{ id: string, ttlSeconds: number }> {
    // A repeated grant at worst leaves an unused lease that expires on its own.
    const reply = await this.call<EtcdLeaseGrantReply>('/v3/lease/grant', { TTL: String(ttlSeconds) }, true)
    if (reply.ID === undefined || (reply.error !== undefined && reply.error !== '')) throw new EtcdError('refused', `etcd: lease grant failed: ${reply.error ?? 'no id'}`)
    return { id: reply.ID, ttlSeconds: num(reply.TTL) }
  }

  /** Renews a lease; answers its remaining TTL in seconds (0: it has expired or was revoked). */
  async leaseKeepAlive (id: string): Promise<number> {
    const reply = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: id }, true)
    return num(reply.result?.TTL)
  }

  async leaseRevoke (id: string): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: id }, true)
    } catch (err) {
      // Already gone: what revoking wanted.
      if (!(err instanceof EtcdError && err.kind === 'refused' && /not found/i.test(err.message))) throw err
    }
  }

  async close (): Promise<void> {
    await this.agent.close()
  }
}

/** A call given up by its signal: `sent` when a write may have reached etcd (ambiguous). */
function abandoned (path: string, sent: boolean): EtcdError {
  return new EtcdError(sent ? 'ambiguous' : 'unreachable', `etcd ${path}: given up by its caller${sent ? ' (the request may have applied)' : ''}`)
}

/** True when the connection was never established, so the request never left. */
function isConnectFailure (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ||
    (Array.isArray((err as { errors?: unknown }).errors) && ((err as { errors: unknown[] }).errors).every((e) => isConnectFailure(e)))
}
