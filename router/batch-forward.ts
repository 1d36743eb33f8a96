import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../src/log'
import { planBatch } from '../src/membership/batch-plan'
import type { RoutingTable } from '../src/membership/routing-table'
import { wireJson, errorResult, type BatchOp } from '../src/protocol/batch'
import { BATCH_LINES_TYPE, resultJson } from '../src/protocol/batch-lines'
import { ShardKvError } from '../src/protocol/errors'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import type { Forwarder, ForwardRequest, KvMethod } from './forward'
import type { RouterMetrics } from './metrics'
import { classifyUpstreamError, describeUpstreamError } from '../src/http/upstream-errors'
import { exchange } from '../src/http/exchange'
import { forwardedToBatchResult, relayShardBatchReply, type RelayedBatchReply } from './batch-results'
import type { RelayedResult } from '../src/protocol/batch-lines'
import { ttlText } from '../src/protocol/ttl'

/**
 * The data plane for batches: split by owner primary, one POST /batch per primary in
 * parallel, moving keys one by one through the single-key Forwarder, and the retry loop.
 *
 * Each sub-batch retries on its own: a group whose node is down or whose map moved waits
 * and re-plans only its own ops against the current routing table (a failover or a
 * rebalance may send them elsewhere now), while the other groups' results are already
 * final. Every op carries the same `rid` on every attempt, so a sub-batch that is resent
 * after a reset connection — which may have committed — is applied once.
 */

const FIRST_BACKOFF_MS = 5
const MAX_BACKOFF_MS = 100

const METHOD: Record<BatchOp['op'], KvMethod> = { get: 'GET', put: 'PUT', delete: 'DELETE' }

/** An op's error result as the client's JSON text. */
function failed (err: ShardKvError): string {
  return resultJson(errorResult(err))
}

export interface BatchForwarderOptions {
  table: () => RoutingTable
  forwarder: Forwarder
  retryTimeoutMs: number
  metrics: RouterMetrics
  log: Logger
}

/** One client batch in flight. */
interface BatchRun {
  ops: readonly BatchOp[]
  /** The authenticated client (x-shardkv-principal upstream; binds every op's rid). */
  principal: string | undefined
  keys: readonly string[]
  id: string
  /** Each op's result as the client's JSON text (a group's are relayed as the node wrote them). */
  results: Array<string | undefined>
  deadline: number
  retries: number
}

/** Why a sub-batch (or part of it) must be sent again. */
type RetryReason = string

export interface BatchOutcome {
  /** Each op's result as JSON text, in the client's order (src/protocol/batch-lines.ts resultsBody). */
  results: string[]
  /** Upstream attempts beyond the first, over all groups. */
  retries: number
}

export class BatchForwarder {
  constructor (private readonly options: BatchForwarderOptions) {}

  /** Runs a validated batch; every op gets a result, in the client's order. Never throws for one op's failure. */
  async run (ops: readonly BatchOp[], id: string, principal?: string): Promise<BatchOutcome> {
    const run: BatchRun = {
      ops,
      principal,
      keys: ops.map((o) => o.key),
      id,
      results: new Array(ops.length),
      deadline: Date.now() + this.options.retryTimeoutMs,
      retries: 0
    }
    await this.dispatch(run, ops.map((_, i) => i), FIRST_BACKOFF_MS, false)
    const results = run.results.map((r, i) => r ?? failed(new ShardKvError('internal', `ops[${i}] got no result`)))
    return { results, retries: run.retries }
  }

  private rid (run: BatchRun, i: number): string {
    return `${run.id}-${i}`
  }

  /** Plans `indexes` against the current table and sends every part in parallel. */
  private async dispatch (run: BatchRun, indexes: number[], backoff: number, timedOutBefore: boolean): Promise<void> {
    const table = this.options.table()
    const plan = planBatch(table, run.keys, indexes)
    for (const i of plan.unowned) {
      run.results[i] = failed(new ShardKvError('unavailable', 'no shard group owns keys: the cluster map has no active groups', { epoch: table.epoch }))
    }
    const parts: Array<Promise<void>> = []
    for (const [url, idx] of plan.byPrimary) parts.push(this.group(run, table, url, idx, backoff, timedOutBefore))
    for (const i of plan.single) parts.push(this.single(run, i))
    await Promise.all(parts)
  }

  /** One sub-batch to one primary, then (after a backoff) whatever of it must be retried. */
  private async group (run: BatchRun, table: RoutingTable, url: string, idx: number[], backoff: number, timedOutBefore: boolean): Promise<void> {
    this.options.metrics.countBatchUpstream('group')
    let retry: number[]
    let reason: RetryReason
    try {
      const reply = await this.send(run, table, url, idx)
      retry = this.apply(run, idx, reply)
      reason = 'misdirected'
    } catch (err) {
      if (err instanceof ShardKvError) {
        const result = failed(err)
        for (const i of idx) run.results[i] = result
        return
      }
      const kind = classifyUpstreamError(err)
      if (kind === 'timeout' && !timedOutBefore) {
        // Once, as for single keys: a connection handed to a worker that died before
        // taking it is never answered; the rids make the repeat safe.
        this.options.metrics.countRetry('timeout')
        run.retries++
        await this.dispatch(run, idx, backoff, true)
        return
      }
      if (kind !== 'retry') {
        const failure = kind === 'timeout'
          ? new ShardKvError('upstream_timeout', `shard ${url} did not answer the batch in time`)
          : new ShardKvError('upstream_error', `shard ${url} failed: ${describeUpstreamError(err)}`)
        if (kind !== 'timeout') this.options.log.error({ event: 'upstream-error', url, batch: run.id, ops: idx.length, err }, 'shard batch request failed')
        const result = failed(failure)
        for (const i of idx) run.results[i] = result
        return
      }
      retry = idx
      reason = describeUpstreamError(err, true)
    }
    if (retry.length === 0) return
    if (Date.now() + backoff > run.deadline) {
      const gaveUp = new ShardKvError('unavailable', reason === 'misdirected'
        ? `the cluster map is changing; no owner accepted this batch op within ${this.options.retryTimeoutMs} ms`
        : `shard ${url} is unreachable (${reason}); gave up after ${this.options.retryTimeoutMs} ms`)
      const result = failed(gaveUp)
      for (const i of retry) run.results[i] = result
      return
    }
    run.retries++
    this.options.metrics.countRetry(reason)
    await sleep(backoff)
    await this.dispatch(run, retry, Math.min(backoff * 2, MAX_BACKOFF_MS), timedOutBefore)
  }

  private async send (run: BatchRun, table: RoutingTable, url: string, idx: readonly number[]): Promise<RelayedBatchReply> {
    let body = '{"ops":['
    for (let j = 0; j < idx.length; j++) {
      const i = idx[j] as number
      const op = run.ops[i] as BatchOp
      // Only writes need a request id: a repeated get changes nothing.
      body += (j === 0 ? '' : ',') + wireJson(op, op.op === 'get' ? undefined : this.rid(run, i))
    }
    body += ']}'
    const headers: Record<string, string> = {
      ...this.options.forwarder.peerHeaders,
      'content-type': 'application/json',
      accept: BATCH_LINES_TYPE,
      [HEADER.epoch]: table.epochHeader
    }
    if (run.principal !== undefined) headers[HEADER.principal] = run.principal
    const res = await exchange(this.options.forwarder.pool(url), { path: BATCH_PATH, method: 'POST', headers, body })
    return relayShardBatchReply(res.status, res.headers['content-type'], res.body.toString('utf8'), idx.length, url)
  }

  /** Stores a sub-batch's final results; returns the indexes to retry (misdirected). */
  private apply (run: BatchRun, idx: readonly number[], reply: RelayedBatchReply): number[] {
    if (reply.kind === 'misdirected') return [...idx]
    if (reply.kind === 'failed') {
      const result = resultJson(reply.result)
      for (const i of idx) run.results[i] = result
      return []
    }
    const retry: number[] = []
    for (let j = 0; j < idx.length; j++) {
      const i = idx[j] as number
      const r = reply.results[j] as RelayedResult
      if (r.status === 421) retry.push(i)
      else run.results[i] = r.json
    }
    return retry
  }

  /** A moving key: the single-key path knows fallback reads and copy on touch. */
  private async single (run: BatchRun, i: number): Promise<void> {
    this.options.metrics.countBatchUpstream('single')
    const op = run.ops[i] as BatchOp
    const req: ForwardRequest = {
      method: METHOD[op.op],
      key: op.key,
      requestId: this.rid(run, i),
      body: op.op === 'put' ? (op.value ?? Buffer.alloc(0)) : null,
      contentType: op.op === 'put' ? op.contentType : undefined,
      ifMatch: op.ifMatch,
      ifNoneMatch: op.ifNoneMatch,
      principal: run.principal
    }
    if (op.ttlMs !== undefined) req.ttl = ttlText(op.ttlMs)
    try {
      const result = await this.options.forwarder.forward(req)
      run.retries += result.retries
      run.results[i] = resultJson(forwardedToBatchResult(op.op, result))
    } catch (err) {
      if (err instanceof ShardKvError) {
        run.results[i] = failed(err)
      } else {
        this.options.log.error({ event: 'batch-single-failed', batch: run.id, index: i, err }, 'single-key forward of a batch op failed')
        run.results[i] = failed(new ShardKvError('internal', 'internal error'))
      }
    }
  }
}
