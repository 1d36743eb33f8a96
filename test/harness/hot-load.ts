import { randomBytes } from 'node:crypto'
import { HttpClient } from './http'
import { kvPath } from '../../src/protocol/key'
import { describe, percentile, prng } from './history'
import { Progress } from './progress'
import { LinHistory } from './linearizability-history'
import type { LinOp, LinOptions, LinReport } from './linearizability'

/**
 * A hot-key load: C clients sharing a few keys, each client doing PUT (values unique to
 * the run: run id + client + counter) / GET / DELETE on random hot keys, one at a time,
 * through a base url (the router). Every op is recorded with its invocation and
 * completion time (performance.now()), its client and its answer (status, body, ETag)
 * in a LinHistory; a request that fails or times out has an unknown outcome. `check()`
 * reads every key once more (appended to the history) and runs the linearizability
 * search (./linearizability.ts) over all of it: unlike ./checker.ts, it holds when many
 * clients write one key at once, which is where a write applied twice shows.
 *
 * Writes carry no request id of their own: the router assigns one and retries with it.
 * For direct-to-node runs, `sendRequestIds` sends `x-shardkv-request-id` itself.
 */

export interface HotLoadOptions {
  baseUrl: string
  clients: number
  keys: number
  durationMs: number
  maxOpsPerClient: number
  /** Per request; when it fires the outcome is unknown. Default 15 s. */
  requestTimeoutMs?: number
  /** Relative weights; default put 5, get 3, delete 2. */
  mix?: { put: number, get: number, delete: number }
  seed?: number
  keyPrefix?: string
  /** Send x-shardkv-request-id with every write (direct-to-node runs). Default false. */
  sendRequestIds?: boolean
  /** These keys instead of `<keyPrefix>/k<i>` (e.g. keys one group owns); `keys` must be their count. */
  keyNames?: string[]
}

export interface HotLoadReport {
  ok: boolean
  ops: number
  unknown: number
  keys: number
  inconclusiveKeys: number
  violations: number
  /** ms spent in the search */
  checkMs: number
  lin: LinReport
  /** Counts, then every violation's explanation. */
  text: string
}

const CONTENT_TYPE = 'text/plain; charset=utf-8'

export class HotLoad {
  readonly history = new LinHistory()
  readonly opts: Required<Omit<HotLoadOptions, 'keyNames'>> & Pick<HotLoadOptions, 'keyNames'>
  private readonly http: HttpClient
  private readonly ownHttp: boolean
  private stopRequested = false
  private started = 0
  private finished = false
  private running: Promise<void> | undefined
  private readonly progress = new Progress()
  private readonly latencies: number[] = []
  readonly counts = { puts: 0, gets: 0, deletes: 0, unknown: 0, retriedByRouter: 0 }
  readonly failures: string[] = []

  constructor (options: HotLoadOptions, http?: HttpClient) {
    if (options.clients < 1 || options.keys < 1) throw new RangeError('clients and keys must be >= 1')
    if (options.keyNames !== undefined && options.keyNames.length !== options.keys) throw new RangeError('keys must be keyNames.length')
    if (!(options.durationMs > 0) || !(options.maxOpsPerClient > 0)) throw new RangeError('the load must be bounded in time and count')
    this.opts = {
      requestTimeoutMs: 15_000,
      mix: { put: 5, get: 3, delete: 2 },
      seed: Math.floor(Math.random() * 2 ** 31),
      keyPrefix: `hot${randomBytes(4).toString('hex')}`,
      sendRequestIds: false,
      ...options
    }
    this.http = http ?? new HttpClient({ connections: Math.max(8, options.clients + 4) })
    this.ownHttp = http === undefined
  }

  keyOf (i: number): string {
    return this.opts.keyNames?.[i] ?? `${this.opts.keyPrefix}/k${i}`
  }

  allKeys (): string[] {
    return Array.from({ length: this.opts.keys }, (_, i) => this.keyOf(i))
  }

  run (): Promise<void> {
    this.running ??= (async () => {
      this.started = Date.now()
      await Promise.all(Array.from({ length: this.opts.clients }, async (_, c) => await this.client(c)))
      this.finished = true
      this.progress.end()
    })()
    return this.running
  }

  stop (): void {
    this.stopRequested = true
  }

  completedOps (): number {
    return this.progress.done
  }

  waitForOps (n: number): Promise<void> {
    return this.progress.waitFor(n)
  }

  private async client (c: number): Promise<void> {
    const rand = prng(this.opts.seed + c * 7919)
    const { put, get, delete: del } = this.opts.mix
    const total = put + get + del
    const deadline = this.started + this.opts.durationMs
    for (let n = 0; n < this.opts.maxOpsPerClient; n++) {
      if (this.stopRequested || Date.now() >= deadline) break
      const key = this.keyOf(Math.floor(rand() * this.opts.keys))
      const pick = rand() * total
      if (pick < put) await this.op(c, key, 'put', `${this.opts.keyPrefix}|c${c}|n${n}`)
      else if (pick < put + get) await this.op(c, key, 'get')
      else await this.op(c, key, 'delete')
      this.progress.bump()
    }
  }

  /** One request, recorded in the history. */
  private async op (c: number, key: string, kind: LinOp['kind'], value?: string, note?: string): Promise<LinOp> {
    if (kind === 'put') this.counts.puts++
    else if (kind === 'get') this.counts.gets++
    else this.counts.deletes++
    const headers: Record<string, string> = {}
    if (kind === 'put') headers['content-type'] = CONTENT_TYPE
    if (kind !== 'get' && this.opts.sendRequestIds) headers['x-shardkv-request-id'] = `hl-${randomBytes(8).toString('hex')}`
    const method = kind === 'put' ? 'PUT' : kind === 'get' ? 'GET' : 'DELETE'
    const rec = this.history.invoke(value === undefined ? { key, client: c, kind } : { key, client: c, kind, value })
    const t = performance.now()
    try {
      const res = await this.http.request(method, this.opts.baseUrl + kvPath(key), { body: value, headers, timeoutMs: this.opts.requestTimeoutMs })
      this.latencies.push(performance.now() - t)
      if (res.header('x-shardkv-retries') !== undefined) this.counts.retriedByRouter++
      const etag = res.header('etag')
      if (res.status >= 500) {
        this.counts.unknown++
        this.fail(`${method} ${key} c${c}: ${res.status} ${res.text().slice(0, 160)}`)
      }
      const answer: { got?: string, etag?: string, note?: string } = {}
      if (kind === 'get' && res.status === 200) answer.got = res.text()
      if (etag !== undefined) answer.etag = etag
      const retries = res.header('x-shardkv-retries')
      const notes = [note, retries === undefined ? undefined : `router retried ${retries}`, res.status >= 500 ? res.text().slice(0, 80) : undefined].filter((x) => x !== undefined)
      if (notes.length > 0) answer.note = notes.join('; ')
      this.history.ok(rec, res.status, answer)
    } catch (err) {
      this.counts.unknown++
      this.fail(`${method} ${key} c${c}: ${describe(err)}`)
      this.history.unknown(rec, [note, describe(err).slice(0, 80)].filter((x) => x !== undefined).join('; '))
    }
    return rec
  }

  private fail (text: string): void {
    if (this.failures.length < 30) this.failures.push(text)
  }

  /**
   * After the load: reads every key once more (retrying failures a few times, each try an
   * op of the history), then checks the whole history.
   */
  async check (options: LinOptions = {}): Promise<HotLoadReport> {
    if (this.running !== undefined && !this.finished) throw new Error('check() while the load is still running')
    await Promise.all(this.allKeys().map(async (key) => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const rec = await this.op(-1, key, 'get', undefined, 'final read')
        if (rec.status === 200 || rec.status === 404) return
        await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)))
      }
    }))
    const lin = this.history.check(options)
    return {
      ok: lin.ok && lin.inconclusive.length === 0,
      ops: lin.ops,
      unknown: lin.unknown,
      keys: lin.keys,
      inconclusiveKeys: lin.inconclusive.length,
      violations: lin.violations.length,
      checkMs: lin.ms,
      lin,
      text: `${this.summary()}\n${lin.text}`
    }
  }

  /** One line of counts (and the first failures). */
  summary (): string {
    const sorted = [...this.latencies].sort((a, b) => a - b)
    const head = `hot load: ${this.opts.clients} clients on ${this.opts.keys} keys, ${this.progress.done} ops (${this.counts.puts} put, ${this.counts.gets} get, ${this.counts.deletes} delete), ` +
      `${this.counts.unknown} unknown outcome, router retried ${this.counts.retriedByRouter}, ` +
      `p50 ${percentile(sorted, 0.5).toFixed(1)} ms p99 ${percentile(sorted, 0.99).toFixed(1)} ms max ${(sorted[sorted.length - 1] ?? 0).toFixed(1)} ms`
    return this.failures.length === 0 ? head : `${head}\n${this.failures.slice(0, 8).map((f) => `  failed ${f}`).join('\n')}`
  }

  async close (): Promise<void> {
    this.stop()
    if (this.ownHttp) await this.http.close()
  }
}
