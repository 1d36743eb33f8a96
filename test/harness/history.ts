import { randomBytes } from 'node:crypto'
import { HttpClient, type HttpResponse } from './http'
import { kvPath } from '../../src/protocol/key'
import { HistoryChecker, type HistoryReport, type KeyState } from './checker'
import { Progress } from './progress'
import { LinHistory, withLinearizability } from './linearizability-history'
import type { LinOp } from './linearizability'

export * from './checker'

/**
 * A bounded concurrent load generator: C clients, each owning a disjoint set of keys
 * and doing PUT/GET/DELETE on them one at a time with values unique to the run, for
 * at most durationMs and at most maxOpsPerClient operations. Every request and its
 * outcome goes to a HistoryChecker (./checker.ts); verify() reads every key back at
 * the end. Every op is also recorded with its invocation and completion times in a
 * LinHistory (./linearizability.ts), and verify() runs the linearizability search over
 * it (with the read-backs) as well. Failed client requests (network errors, timeouts, 5xx, unexpected
 * statuses) are counted and the first ones kept for the test's message.
 */

export interface LoadOptions {
  /** Router (or shard) base url, e.g. http://127.0.0.1:8080 */
  baseUrl: string
  clients: number
  keysPerClient: number
  /** The load stops after this long… */
  durationMs: number
  /** …or after this many operations per client, whichever comes first. */
  maxOpsPerClient: number
  /** Per request; an op that takes longer counts as failed (outcome unknown). Default 15 s. */
  requestTimeoutMs?: number
  /** Relative weights of operations. Default put 5, get 4, delete 1. */
  mix?: { put: number, get: number, delete: number }
  /** Pad values to at least this many bytes (default 0). */
  valueBytes?: number
  /** Deterministic op sequence per client (default: random). */
  seed?: number
  /** Keys start with this (default: a random run id). Keys contain an encoded '/'. */
  keyPrefix?: string
  /** Pause between a client's ops (default 0). */
  thinkMs?: number
}

export interface FailedRequest {
  client: number
  op: 'put' | 'get' | 'delete' | 'verify'
  key: string
  status?: number
  error?: string
  at: number
}

export interface LoadStats {
  ops: number
  puts: number
  gets: number
  deletes: number
  /** Requests that failed: network errors, timeouts, 5xx, and unexpected statuses. */
  failedRequests: number
  failures: FailedRequest[]
  elapsedMs: number
  /** Requests the router answered with x-shardkv-retries set (it retried upstream). */
  retriedByRouter: number
  latencyMs: { p50: number, p99: number, max: number }
}

const CONTENT_TYPE = 'text/plain; charset=utf-8'

/** mulberry32: small, seedable, good enough to pick operations. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0
}

export class LoadGenerator {
  readonly checker = new HistoryChecker()
  readonly lin = new LinHistory()
  readonly opts: Required<Omit<LoadOptions, 'seed'>> & { seed: number }
  private readonly http: HttpClient
  private readonly ownHttp: boolean
  private stopRequested = false
  private started = 0
  private readonly progress = new Progress()
  private running: Promise<LoadStats> | undefined
  private readonly failures: FailedRequest[] = []
  private failedCount = 0
  private retried = 0
  private readonly latencies: number[] = []
  /** [start, duration] of every request, for the latency of a window (a switchover, say). */
  private readonly timed: Array<[number, number]> = []
  private readonly opCounts = { puts: 0, gets: 0, deletes: 0 }

  constructor (options: LoadOptions, http?: HttpClient) {
    if (options.clients < 1 || options.keysPerClient < 1) throw new RangeError('clients and keysPerClient must be >= 1')
    if (!(options.durationMs > 0) || !(options.maxOpsPerClient > 0)) throw new RangeError('the load must be bounded in time and count')
    this.opts = {
      requestTimeoutMs: 15_000,
      mix: { put: 5, get: 4, delete: 1 },
      valueBytes: 0,
      seed: Math.floor(Math.random() * 2 ** 31),
      keyPrefix: `h${randomBytes(4).toString('hex')}`,
      thinkMs: 0,
      ...options
    }
    this.http = http ?? new HttpClient({ connections: Math.max(8, options.clients) })
    this.ownHttp = http === undefined
  }

  keyOf (client: number, i: number): string {
    return `${this.opts.keyPrefix}/c${client}/k${i}`
  }

  /** Starts the load (once); resolves with its stats when every client has stopped. */
  run (): Promise<LoadStats> {
    this.running ??= this.runAll()
    return this.running
  }

  /** Asks the clients to stop after their current operation. */
  stop (): void {
    this.stopRequested = true
  }

  completedOps (): number {
    return this.progress.done
  }

  /** ms since the load started: the clock of `FailedRequest.at`. */
  elapsedMs (): number {
    return this.started === 0 ? 0 : Date.now() - this.started
  }

  /** Resolves once at least n operations have completed (or the load ended). */
  waitForOps (n: number): Promise<void> {
    return this.progress.waitFor(n)
  }

  private finished = false

  private async runAll (): Promise<LoadStats> {
    this.started = Date.now()
    for (let c = 0; c < this.opts.clients; c++) {
      for (let i = 0; i < this.opts.keysPerClient; i++) this.checker.track(this.keyOf(c, i))
    }
    const clients = Array.from({ length: this.opts.clients }, (_, c) => this.client(c))
    await Promise.all(clients)
    this.finished = true
    this.progress.end()
    return this.stats()
  }

  stats (): LoadStats {
    const sorted = [...this.latencies].sort((a, b) => a - b)
    return {
      ops: this.progress.done,
      ...this.opCounts,
      failedRequests: this.failedCount,
      failures: [...this.failures],
      elapsedMs: (this.started === 0 ? 0 : Date.now() - this.started),
      retriedByRouter: this.retried,
      latencyMs: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 }
    }
  }

  /** Latency of the requests that were in flight at some instant of [from, to] (Date.now() clock). */
  latencyDuring (from: number, to: number): { requests: number, p50: number, p99: number, max: number } {
    const sorted = this.timed.filter(([start, ms]) => start <= to && start + ms >= from).map(([, ms]) => ms).sort((a, b) => a - b)
    return { requests: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 }
  }

  private fail (f: Omit<FailedRequest, 'at'>): void {
    this.failedCount++
    if (this.failures.length < 50) this.failures.push({ ...f, at: Date.now() - this.started })
  }

  private value (client: number, counter: number): string {
    const v = `${this.opts.keyPrefix}|c${client}|n${counter}|`
    return this.opts.valueBytes > v.length ? v + 'x'.repeat(this.opts.valueBytes - v.length) : v
  }

  private async send (method: string, key: string, body?: string, rec?: LinOp): Promise<HttpResponse> {
    const t = Date.now()
    const res = await this.http.request(method, this.opts.baseUrl + kvPath(key), {
      body,
      headers: body === undefined ? {} : { 'content-type': CONTENT_TYPE },
      timeoutMs: this.opts.requestTimeoutMs
    })
    this.latencies.push(Date.now() - t)
    this.timed.push([t, Date.now() - t])
    if (res.header('x-shardkv-retries') !== undefined) this.retried++
    if (rec !== undefined) recordAnswer(this.lin, rec, res)
    return res
  }

  private async client (c: number): Promise<void> {
    const rand = prng(this.opts.seed + c * 7919)
    const { put, get, delete: del } = this.opts.mix
    const total = put + get + del
    const deadline = this.started + this.opts.durationMs
    let counter = 0
    for (let n = 0; n < this.opts.maxOpsPerClient; n++) {
      if (this.stopRequested || Date.now() >= deadline) break
      const key = this.keyOf(c, Math.floor(rand() * this.opts.keysPerClient))
      const pick = rand() * total
      if (pick < put) await this.doPut(c, key, this.value(c, counter++))
      else if (pick < put + get) await this.doGet(c, key)
      else await this.doDelete(c, key)
      this.progress.bump()
      if (this.opts.thinkMs > 0) await new Promise((resolve) => setTimeout(resolve, this.opts.thinkMs))
    }
  }

  private async doPut (c: number, key: string, value: string): Promise<void> {
    this.opCounts.puts++
    this.checker.writeStarted(key, value)
    const rec = this.lin.invoke({ key, client: c, kind: 'put', value })
    try {
      const res = await this.send('PUT', key, value, rec)
      if (res.status === 200 || res.status === 201) {
        this.checker.writeAcked(key, value)
        return
      }
      this.checker.writeUnknown(key, value)
      this.fail({ client: c, op: 'put', key, status: res.status, error: res.text().slice(0, 200) })
    } catch (err) {
      this.lin.unknown(rec, describe(err))
      this.checker.writeUnknown(key, value)
      this.fail({ client: c, op: 'put', key, error: describe(err) })
    }
  }

  private async doDelete (c: number, key: string): Promise<void> {
    this.opCounts.deletes++
    this.checker.writeStarted(key, null)
    const rec = this.lin.invoke({ key, client: c, kind: 'delete' })
    try {
      const res = await this.send('DELETE', key, undefined, rec)
      if (res.status === 204) {
        this.checker.writeAcked(key, null)
        return
      }
      this.checker.writeUnknown(key, null)
      this.fail({ client: c, op: 'delete', key, status: res.status, error: res.text().slice(0, 200) })
    } catch (err) {
      this.lin.unknown(rec, describe(err))
      this.checker.writeUnknown(key, null)
      this.fail({ client: c, op: 'delete', key, error: describe(err) })
    }
  }

  private async doGet (c: number, key: string): Promise<void> {
    this.opCounts.gets++
    const rec = this.lin.invoke({ key, client: c, kind: 'get' })
    try {
      const res = await this.send('GET', key, undefined, rec)
      if (res.status === 200) {
        this.checker.readResult(key, res.text(), { expected: CONTENT_TYPE, got: res.header('content-type') })
      } else if (res.status === 404) {
        this.checker.readResult(key, null)
      } else {
        this.checker.readFailed()
        this.fail({ client: c, op: 'get', key, status: res.status, error: res.text().slice(0, 200) })
      }
    } catch (err) {
      this.lin.unknown(rec)
      this.checker.readFailed()
      this.fail({ client: c, op: 'get', key, error: describe(err) })
    }
  }

  /**
   * Reads every tracked key back (after the load) and checks it. Verification reads
   * are retried a few times on network errors/5xx, since the question here is what
   * the store holds, not whether one request succeeds.
   */
  async verify (baseUrl: string = this.opts.baseUrl, concurrency = 16): Promise<HistoryReport> {
    if (this.running !== undefined && !this.finished) throw new Error('verify() while the load is still running')
    const keys = this.checker.trackedKeys()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!
        let got: KeyState | { error: string } = { error: 'not read' }
        for (let attempt = 0; attempt < 4; attempt++) {
          const rec = this.lin.invoke({ key, client: 'verify', kind: 'get', note: 'read-back' })
          try {
            const res = await this.http.request('GET', baseUrl + kvPath(key), { timeoutMs: this.opts.requestTimeoutMs })
            recordAnswer(this.lin, rec, res)
            if (res.status === 200) { got = res.text(); break }
            if (res.status === 404) { got = null; break }
            got = { error: `status ${res.status}: ${res.text().slice(0, 200)}` }
          } catch (err) {
            this.lin.unknown(rec)
            got = { error: describe(err) }
          }
          await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)))
        }
        this.checker.finalState(key, got)
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker))
    return withLinearizability(this.checker.report(), this.lin.check())
  }

  async close (): Promise<void> {
    this.stop()
    if (this.ownHttp) await this.http.close()
  }
}

/** Records an HTTP answer (status, body of a GET 200, ETag) for `rec` in `lin`. */
export function recordAnswer (lin: LinHistory, rec: LinOp, res: HttpResponse): void {
  const etag = res.header('etag')
  const answer: { got?: string, etag?: string } = {}
  if (rec.kind === 'get' && res.status === 200) answer.got = res.text()
  if (etag !== undefined) answer.etag = etag
  lin.ok(rec, res.status, answer)
}

export function describe (err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code
    return `${err.name}${code === undefined ? '' : ` ${code}`}: ${err.message}`
  }
  return String(err)
}

/** One line for a test message: the load's counts and its first failures. */
export function formatStats (s: LoadStats): string {
  const head = `${s.ops} ops (${s.puts} put, ${s.gets} get, ${s.deletes} delete) in ${s.elapsedMs} ms, ` +
    `${s.failedRequests} failed, router retried ${s.retriedByRouter}, p50 ${s.latencyMs.p50} ms p99 ${s.latencyMs.p99} ms max ${s.latencyMs.max} ms`
  if (s.failures.length === 0) return head
  return head + '\n' + s.failures.slice(0, 10).map((f) =>
    `  failed ${f.op} key=${JSON.stringify(f.key)} at=${f.at}ms ${f.status === undefined ? '' : `status=${f.status} `}${f.error ?? ''}`).join('\n')
}
