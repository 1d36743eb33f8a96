import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { KvError, NotFoundError, type KvClient, type PutResult } from '../../src/client'
import { HistoryChecker, type HistoryReport, type KeyState } from './checker'
import { Progress } from './progress'
import { LinHistory, withLinearizability } from './linearizability-history'

/**
 * The history-checked load of test/harness/history.ts, driven through the TypeScript
 * client (either mode) instead of raw HTTP: C clients, each owning a disjoint set of
 * keys and doing put/get/delete on them one at a time with values unique to the run.
 * Every call and its outcome goes to a HistoryChecker: a resolved write is
 * acknowledged, a PreconditionFailed/invalid refusal changed nothing, and any other
 * error (UnavailableError, a transport failure) leaves the write's outcome unknown.
 * Each call is also an op of a LinHistory, and verify() runs the linearizability search
 * over it too (a put's `created` is its 201).
 */

export interface ClientLoadOptions {
  clients: number
  keysPerClient: number
  durationMs: number
  maxOpsPerClient: number
  /** Relative weights; default put 5, get 4, delete 1. */
  mix?: { put: number, get: number, delete: number }
  keyPrefix?: string
  /** Only these keys (split between the clients) instead of generated ones. */
  keys?: string[]
}

export interface ClientFailure { op: string, key: string, error: string, at: number }

const CONTENT_TYPE = 'text/plain; charset=utf-8'

export class ClientLoad {
  readonly checker = new HistoryChecker()
  readonly lin = new LinHistory()
  readonly failures: ClientFailure[] = []
  failed = 0
  /** Completion time (ms since start) of every acknowledged write, by key. */
  readonly ackTimes: Array<{ key: string, at: number }> = []
  private stopped = false
  private readonly t0 = Date.now()
  private readonly prefix: string
  private readonly keysByClient: string[][]
  private running: Promise<void> | undefined
  private readonly progress = new Progress()

  constructor (private readonly kv: KvClient, private readonly opts: ClientLoadOptions) {
    this.prefix = opts.keyPrefix ?? `cl${randomBytes(3).toString('hex')}`
    this.keysByClient = Array.from({ length: opts.clients }, (_, c) => opts.keys !== undefined
      ? opts.keys.filter((_, i) => i % opts.clients === c)
      : Array.from({ length: opts.keysPerClient }, (_, i) => `${this.prefix}/c${c}/k${i}`))
    for (const keys of this.keysByClient) for (const k of keys) this.checker.track(k)
  }

  /** Operations completed so far. */
  get ops (): number {
    return this.progress.done
  }

  run (): Promise<void> {
    this.running ??= Promise.all(this.keysByClient.map(async (keys, c) => await this.client(c, keys))).then(() => {
      this.stopped = true
      this.progress.end()
    })
    return this.running
  }

  /** ms since the load was created (the clock of `ackTimes` and failures). */
  elapsed (): number {
    return Date.now() - this.t0
  }

  stop (): void {
    this.stopped = true
  }

  /** Resolves once n operations have completed in all (or the load ended). */
  async waitForOps (n: number): Promise<void> {
    if (this.stopped) return
    await this.progress.waitFor(n)
  }

  private async client (c: number, keys: string[]): Promise<void> {
    if (keys.length === 0) return
    const { put, get, delete: del } = this.opts.mix ?? { put: 5, get: 4, delete: 1 }
    const deadline = Date.now() + this.opts.durationMs
    for (let n = 0; n < this.opts.maxOpsPerClient && !this.stopped && Date.now() < deadline; n++) {
      const key = keys[Math.floor(Math.random() * keys.length)] as string
      const r = Math.random() * (put + get + del)
      if (r < put) await this.put(c, key, `${this.prefix}|c${c}|n${n}|`)
      else if (r < put + get) await this.get(c, key)
      else await this.delete(c, key)
      this.progress.bump()
    }
  }

  private fail (op: string, key: string, err: unknown): void {
    this.failed++
    if (this.failures.length < 30) this.failures.push({ op, key, error: `${(err as Error).name}: ${(err as Error).message}`, at: Date.now() - this.t0 })
  }

  private async write (c: number, op: 'put' | 'delete', key: string, state: KeyState, call: () => Promise<PutResult | undefined>): Promise<void> {
    this.checker.writeStarted(key, state)
    const rec = this.lin.invoke(op === 'put' ? { key, client: c, kind: 'put', value: state as string } : { key, client: c, kind: 'delete' })
    try {
      const result = await call()
      if (result === undefined) this.lin.ok(rec, 204)
      else this.lin.ok(rec, result.created ? 201 : 200, { etag: result.etag })
      this.checker.writeAcked(key, state)
      this.ackTimes.push({ key, at: Date.now() - this.t0 })
    } catch (err) {
      // A 4xx answer (other than an unavailable owner) is a definite refusal: nothing was applied.
      if (err instanceof KvError && err.status < 500) {
        this.lin.ok(rec, err.status)
        this.checker.writeRefused(key, state)
      } else {
        this.lin.unknown(rec, String(err).slice(0, 80))
        this.checker.writeUnknown(key, state)
      }
      this.fail(op, key, err)
    }
  }

  private async put (c: number, key: string, value: string): Promise<void> {
    await this.write(c, 'put', key, value, async () => await this.kv.put(key, value, { contentType: CONTENT_TYPE }))
  }

  private async delete (c: number, key: string): Promise<void> {
    await this.write(c, 'delete', key, null, async () => { await this.kv.delete(key); return undefined })
  }

  private async get (c: number, key: string): Promise<void> {
    const rec = this.lin.invoke({ key, client: c, kind: 'get' })
    try {
      const e = await this.kv.get(key)
      this.lin.ok(rec, 200, { got: e.value.toString('utf8'), etag: e.etag })
      this.checker.readResult(key, e.value.toString('utf8'), { expected: CONTENT_TYPE, got: e.contentType })
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.lin.ok(rec, 404)
        this.checker.readResult(key, null)
        return
      }
      this.lin.unknown(rec)
      this.checker.readFailed()
      this.fail('get', key, err)
    }
  }

  /** Reads every key back through `reader` (after the load) with getMany, retrying failed ones a few times. */
  async verify (reader: KvClient): Promise<HistoryReport> {
    if (this.running !== undefined) await this.running
    let todo = this.checker.trackedKeys()
    for (let attempt = 0; attempt < 4 && todo.length > 0; attempt++) {
      const recs = todo.map((key) => this.lin.invoke({ key, client: 'verify', kind: 'get', note: 'read-back' }))
      const got = await reader.getMany(todo)
      const retry: string[] = []
      todo.forEach((key, i) => {
        const r = got[i]
        const rec = recs[i]!
        if (r instanceof NotFoundError) this.lin.ok(rec, 404)
        else if (r instanceof Error || r === undefined) this.lin.unknown(rec)
        else this.lin.ok(rec, 200, { got: r.value.toString('utf8'), etag: r.etag })
        if (r instanceof NotFoundError) this.checker.finalState(key, null)
        else if (r instanceof Error || r === undefined) {
          if (attempt === 3) this.checker.finalState(key, { error: String(r) })
          else retry.push(key)
        } else this.checker.finalState(key, r.value.toString('utf8'))
      })
      todo = retry
      if (todo.length > 0) await new Promise((resolve) => setTimeout(resolve, 300 * (attempt + 1)))
    }
    return withLinearizability(this.checker.report(), this.lin.check())
  }

  summary (): string {
    const head = `${this.ops} ops, ${this.failed} failed; checker ${JSON.stringify(this.checker.counts)}`
    return this.failures.length === 0 ? head : `${head}\n${this.failures.slice(0, 8).map((f) => `  ${f.op} ${f.key} at ${f.at}ms: ${f.error}`).join('\n')}`
  }
}

/**
 * A short load through `kv` (16 clients × 4 keys for 5 s unless told), then its history
 * checked through `reader`: no call failed, no stale read, no acknowledged write lost,
 * linearizable.
 */
export async function checkClientHistory (t: Test, kv: KvClient, reader: KvClient, options: Partial<ClientLoadOptions> = {}): Promise<void> {
  const load = new ClientLoad(kv, { clients: 16, keysPerClient: 4, durationMs: 5_000, maxOpsPerClient: 20_000, ...options })
  await load.run()
  t.comment(`load: ${load.summary()}`)
  t.equal(load.failed, 0, 'no call failed')
  const report = await load.verify(reader)
  t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
  t.ok(report.ok, `history: ${report.text}`)
}
