import { randomBytes } from 'node:crypto'
import { HistoryChecker, type HistoryReport, type KeyState } from './checker'
import { HttpClient } from './http'
import { describe, percentile, prng } from './history'
import { b64, postBatch, type WireOp, type WireResult } from './batch'
import { Progress } from './progress'
import { LinHistory, withLinearizability } from './linearizability-history'
import type { LinOp } from './linearizability'

/**
 * The batch counterpart of LoadGenerator (./history.ts): C clients, each owning a disjoint
 * set of keys, each sending POST /batch requests one at a time, every batch holding
 * distinct keys of its client. Every op of a batch is invoked when the batch is sent and
 * completes when its answer arrives, so the HistoryChecker's per-key sequential model
 * holds: a write is pending from send to answer, then acknowledged (2xx), refused (a
 * definite 4xx) or unknown (5xx, a failed request); a get is checked against it. Each op
 * is also an op of a LinHistory (invoked when its batch is sent, completed when the
 * answer arrives), and verify() runs the linearizability search over it too.
 */

export interface BatchLoadOptions {
  baseUrl: string
  clients: number
  keysPerClient: number
  /** Ops per batch (distinct keys; at most keysPerClient). */
  batchSize: number
  durationMs: number
  maxBatchesPerClient: number
  /** Relative weights. Default put 5, get 4, delete 1. */
  mix?: { put: number, get: number, delete: number }
  seed?: number
  keyPrefix?: string
  requestTimeoutMs?: number
}

export interface FailedOp {
  client: number
  op: string
  key: string
  status?: number
  error?: string
  at: number
}

export interface BatchLoadStats {
  batches: number
  ops: number
  puts: number
  gets: number
  deletes: number
  failedOps: number
  failures: FailedOp[]
  elapsedMs: number
  /** Batches the router answered with x-shardkv-retries set. */
  retriedByRouter: number
  latencyMs: { p50: number, p99: number, max: number }
}

const CONTENT_TYPE = 'text/plain; charset=utf-8'

export class BatchLoadGenerator {
  readonly checker = new HistoryChecker()
  readonly lin = new LinHistory()
  private readonly opts: Required<BatchLoadOptions>
  private readonly http: HttpClient
  private readonly ownHttp: boolean
  private stopRequested = false
  private started = 0
  private finished = false
  private running: Promise<BatchLoadStats> | undefined
  private readonly progress = new Progress()
  private readonly failures: FailedOp[] = []
  private failedOps = 0
  private retried = 0
  private readonly latencies: number[] = []
  private readonly counts = { ops: 0, puts: 0, gets: 0, deletes: 0 }

  constructor (options: BatchLoadOptions, http?: HttpClient) {
    if (options.batchSize < 1 || options.batchSize > options.keysPerClient) throw new RangeError('1 <= batchSize <= keysPerClient')
    this.opts = {
      mix: { put: 5, get: 4, delete: 1 },
      seed: Math.floor(Math.random() * 2 ** 31),
      keyPrefix: `b${randomBytes(4).toString('hex')}`,
      requestTimeoutMs: 30_000,
      ...options
    }
    this.http = http ?? new HttpClient({ connections: Math.max(8, options.clients) })
    this.ownHttp = http === undefined
  }

  keyOf (client: number, i: number): string {
    return `${this.opts.keyPrefix}/c${client}/k ${i}`
  }

  /** Writes every key of every client once (acknowledged writes, in the history), before run(). */
  async preload (): Promise<void> {
    await Promise.all(Array.from({ length: this.opts.clients }, async (_, c) => {
      const keys = Array.from({ length: this.opts.keysPerClient }, (_, i) => this.keyOf(c, i))
      for (let i = 0; i < keys.length; i += this.opts.batchSize) {
        const ops: WireOp[] = keys.slice(i, i + this.opts.batchSize).map((key) => ({ op: 'put', key, value: b64(`${key}|pre`), contentType: CONTENT_TYPE }))
        await this.send(c, ops)
      }
    }))
  }

  run (): Promise<BatchLoadStats> {
    this.running ??= (async () => {
      this.started = Date.now()
      await Promise.all(Array.from({ length: this.opts.clients }, async (_, c) => await this.client(c)))
      this.finished = true
      this.progress.end()
      return this.stats()
    })()
    return this.running
  }

  stop (): void {
    this.stopRequested = true
  }

  completedBatches (): number {
    return this.progress.done
  }

  waitForBatches (n: number): Promise<void> {
    return this.progress.waitFor(n)
  }

  stats (): BatchLoadStats {
    const sorted = [...this.latencies].sort((a, b) => a - b)
    return {
      batches: this.progress.done,
      ...this.counts,
      failedOps: this.failedOps,
      failures: [...this.failures],
      elapsedMs: this.started === 0 ? 0 : Date.now() - this.started,
      retriedByRouter: this.retried,
      latencyMs: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 }
    }
  }

  private fail (f: Omit<FailedOp, 'at'>): void {
    this.failedOps++
    if (this.failures.length < 50) this.failures.push({ ...f, at: this.started === 0 ? 0 : Date.now() - this.started })
  }

  private async client (c: number): Promise<void> {
    const rand = prng(this.opts.seed + c * 7919)
    const { put, get, delete: del } = this.opts.mix
    const total = put + get + del
    const deadline = this.started + this.opts.durationMs
    let counter = 0
    for (let n = 0; n < this.opts.maxBatchesPerClient; n++) {
      if (this.stopRequested || Date.now() >= deadline) break
      const picked = new Set<number>()
      while (picked.size < this.opts.batchSize) picked.add(Math.floor(rand() * this.opts.keysPerClient))
      const ops: WireOp[] = [...picked].map((i) => {
        const key = this.keyOf(c, i)
        const pick = rand() * total
        if (pick < put) return { op: 'put', key, value: b64(`${this.opts.keyPrefix}|c${c}|n${counter++}|`), contentType: CONTENT_TYPE }
        if (pick < put + get) return { op: 'get', key }
        return { op: 'delete', key }
      })
      await this.send(c, ops)
      this.progress.bump()
    }
  }

  /** One batch, recorded op by op in the history. */
  private async send (c: number, ops: WireOp[]): Promise<void> {
    const state = (op: WireOp): KeyState => op.op === 'put' ? Buffer.from(op.value ?? '', 'base64').toString('utf8') : null
    for (const op of ops) {
      this.counts.ops++
      if (op.op === 'get') {
        this.counts.gets++
      } else {
        if (op.op === 'put') this.counts.puts++
        else this.counts.deletes++
        this.checker.writeStarted(op.key, state(op))
      }
    }
    const recs: LinOp[] = ops.map((op) => this.lin.invoke(op.op === 'put'
      ? { key: op.key, client: c, kind: 'put', value: state(op) as string }
      : { key: op.key, client: c, kind: op.op === 'get' ? 'get' : 'delete' }))
    const t0 = Date.now()
    let results: WireResult[] | undefined
    let whole = ''
    try {
      const res = await postBatch(this.http, this.opts.baseUrl, ops, this.opts.requestTimeoutMs)
      this.latencies.push(Date.now() - t0)
      if (res.header('x-shardkv-retries') !== undefined) this.retried++
      const body = res.status === 200 ? res.json<{ results?: WireResult[] }>() : undefined
      if (body !== undefined && Array.isArray(body.results) && body.results.length === ops.length) results = body.results
      else whole = `status ${res.status}: ${res.text().slice(0, 200)}`
    } catch (err) {
      whole = describe(err)
    }
    ops.forEach((op, i) => {
      const r = results?.[i]
      const rec = recs[i] as LinOp
      if (r === undefined) this.lin.unknown(rec, whole.slice(0, 80))
      else {
        const answer: { got?: string, etag?: string } = {}
        if (op.op === 'get' && r.status === 200) answer.got = Buffer.from(r.value ?? '', 'base64').toString('utf8')
        if (r.etag !== undefined) answer.etag = r.etag
        this.lin.ok(rec, r.status, answer)
      }
      if (r === undefined) {
        if (op.op === 'get') this.checker.readFailed()
        else this.checker.writeUnknown(op.key, state(op))
        this.fail({ client: c, op: op.op, key: op.key, error: whole })
        return
      }
      if (op.op === 'get') {
        if (r.status === 200) {
          this.checker.readResult(op.key, Buffer.from(r.value ?? '', 'base64').toString('utf8'), { expected: CONTENT_TYPE, got: r.contentType })
        } else if (r.status === 404) {
          this.checker.readResult(op.key, null)
        } else {
          this.checker.readFailed()
          this.fail({ client: c, op: op.op, key: op.key, status: r.status, error: `${r.error ?? ''} ${r.message ?? ''}` })
        }
        return
      }
      const ok = op.op === 'put' ? r.status === 200 || r.status === 201 : r.status === 204
      if (ok) {
        this.checker.writeAcked(op.key, state(op))
        return
      }
      if (r.status >= 500) this.checker.writeUnknown(op.key, state(op))
      else this.checker.writeRefused(op.key, state(op))
      this.fail({ client: c, op: op.op, key: op.key, status: r.status, error: `${r.error ?? ''} ${r.message ?? ''}` })
    })
  }

  /**
   * Reads every key back with batch gets (after the load), retrying keys whose get
   * failed, and checks each against its history.
   */
  async verify (baseUrl: string = this.opts.baseUrl): Promise<HistoryReport> {
    if (this.running !== undefined && !this.finished) throw new Error('verify() while the load is still running')
    const keys: string[] = []
    for (let c = 0; c < this.opts.clients; c++) for (let i = 0; i < this.opts.keysPerClient; i++) keys.push(this.keyOf(c, i))
    const got = new Map<string, KeyState | { error: string }>()
    let todo = keys
    for (let attempt = 0; attempt < 4 && todo.length > 0; attempt++) {
      const again: string[] = []
      for (let i = 0; i < todo.length; i += 100) {
        const chunk = todo.slice(i, i + 100)
        const recs = chunk.map((key) => this.lin.invoke({ key, client: 'verify', kind: 'get', note: 'read-back' }))
        try {
          const res = await postBatch(this.http, baseUrl, chunk.map((key) => ({ op: 'get', key })), this.opts.requestTimeoutMs)
          const results = res.status === 200 ? res.json<{ results: WireResult[] }>().results : undefined
          chunk.forEach((key, j) => {
            const r = results?.[j]
            const rec = recs[j] as LinOp
            if (r === undefined) this.lin.unknown(rec)
            else this.lin.ok(rec, r.status, r.status === 200 ? { got: Buffer.from(r.value ?? '', 'base64').toString('utf8') } : {})
            if (r?.status === 200) got.set(key, Buffer.from(r.value ?? '', 'base64').toString('utf8'))
            else if (r?.status === 404) got.set(key, null)
            else {
              got.set(key, { error: r === undefined ? `batch status ${res.status}` : `status ${r.status} ${r.error ?? ''}` })
              again.push(key)
            }
          })
        } catch (err) {
          for (const rec of recs) this.lin.unknown(rec)
          for (const key of chunk) got.set(key, { error: describe(err) })
          again.push(...chunk)
        }
      }
      todo = again
      if (todo.length > 0) await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)))
    }
    for (const key of keys) this.checker.finalState(key, got.has(key) ? got.get(key) as KeyState | { error: string } : { error: 'not read' })
    return withLinearizability(this.checker.report(), this.lin.check())
  }

  async close (): Promise<void> {
    this.stop()
    if (this.ownHttp) await this.http.close()
  }
}

export function formatBatchStats (s: BatchLoadStats): string {
  const head = `${s.batches} batches, ${s.ops} ops (${s.puts} put, ${s.gets} get, ${s.deletes} delete) in ${s.elapsedMs} ms, ` +
    `${s.failedOps} failed ops, router retried ${s.retriedByRouter} batches, p50 ${s.latencyMs.p50} ms p99 ${s.latencyMs.p99} ms max ${s.latencyMs.max} ms`
  if (s.failures.length === 0) return head
  return head + '\n' + s.failures.slice(0, 10).map((f) =>
    `  failed ${f.op} key=${JSON.stringify(f.key)} at=${f.at}ms ${f.status === undefined ? '' : `status=${f.status} `}${f.error ?? ''}`).join('\n')
}
