import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { KvStore, OpOutcome, StoreOp } from '../src/storage/store'
import type { Ownership } from '../src/membership/ownership'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { formatEtag } from '../src/protocol/preconditions'
import { formatRemainingTtl } from '../src/protocol/ttl'
import { codedResult, errorResult, parseBatch, type BatchOp, type BatchResult } from '../src/protocol/batch'
import { acceptsBatchLines, BATCH_LINES_TYPE, resultLine } from '../src/protocol/batch-lines'
import { jsonBytes } from '../src/http/json-body'
import { authorizeOps, principalName } from '../src/auth/client-guard'
import { countBatch, type ShardMetrics } from './metrics'
import type { OwnershipCache } from './ownership-cache'
import { senderEpoch, servingView, stamped, type WriteQueue } from './serving'
import { BATCH_ID_ROOM, batchOpRequestId, parseRequestId, requireRequestId, type RequestId } from '../src/protocol/request-id'

/**
 * `POST /batch` on a shard node: a group's share of a client batch (src/protocol/batch.ts),
 * applied in ONE transaction — all its writes commit together or not at all (and with
 * them whatever other writes the worker's group commit coalesced) — with its gets read in
 * op order in that same transaction, so a get after a put of the same key sees the put.
 *
 * Serving follows the single-key data API: only the primary serves, under its lease; when
 * it may not, the whole batch is refused with 421. Per op, a key this node does not own
 * gets a 421 result, and so does a key it is handing over (routers send those one by
 * one, through the single-key path that knows fallback reads and copy on touch). The
 * installed map is put once at the top level (`"map"`) when any op was misdirected, so
 * the sender can refresh from it. The answer waits until the highest seq the batch wrote
 * or read is replicated: nothing a failover could take back is shown. A router asks for
 * the answer in the lines form (src/protocol/batch-lines.ts), which it relays unparsed.
 */

export interface BatchApiContext {
  store: KvStore
  ownership: OwnershipCache
  writes: WriteQueue
  replicated: (seq: number) => Promise<void>
  metrics: ShardMetrics
  maxBatchOps: number
  maxBatchBytes: number
  maxValueBytes: number
}

/** The request id op i's write is recorded under: its own, else derived from the batch's. */
function opRequestId (op: BatchOp, index: number, batchId: RequestId | undefined): RequestId | undefined {
  if (op.rid !== undefined) return parseRequestId(op.rid)
  return batchId === undefined ? undefined : { id: batchOpRequestId(batchId.id, index), issued: batchId.issued }
}

function toStoreOp (op: BatchOp, id: RequestId | undefined, principal: string | undefined): StoreOp {
  switch (op.op) {
    case 'get': return { op: 'get', key: op.key }
    case 'put': {
      const put: StoreOp = { op: 'put', key: op.key, value: op.value ?? Buffer.alloc(0), contentType: op.contentType ?? '', conditions: op.conditions }
      // Only when set: the fingerprint of a put without a TTL is what it was before TTLs.
      if (op.ttlMs !== undefined) put.ttlMs = op.ttlMs
      return stamped(put, id, principal)
    }
    case 'delete': return stamped({ op: 'delete', key: op.key, conditions: op.conditions }, id, principal)
  }
}

function misdirectedResult (view: Ownership): BatchResult {
  return codedResult('misdirected', `group ${view.group ?? '?'} does not serve this key at epoch ${view.epoch}`, { epoch: view.epoch, group: view.group })
}

export function registerBatchApi (app: FastifyInstance, ctx: BatchApiContext): void {
  const { store, ownership, writes, replicated, metrics } = ctx
  const limits = { maxOps: ctx.maxBatchOps, maxValueBytes: ctx.maxValueBytes }

  app.post(BATCH_PATH, {
    bodyLimit: ctx.maxBatchBytes,
    // The server-wide handler calls any oversized body a value_too_large; here it is the batch.
    errorHandler: (err: FastifyError) => {
      if (err.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') throw err
      throw new ShardKvError('batch_too_large', `a batch body is at most ${ctx.maxBatchBytes} bytes`, { maxBytes: ctx.maxBatchBytes })
    }
  }, async (request, reply) => {
    senderEpoch(request)
    const header = request.headers[HEADER.requestId]
    const batchId = header === undefined ? undefined : requireRequestId(header, BATCH_ID_ROOM)
    const ops = parseBatch(jsonBytes(request), limits)
    authorizeOps(request.principal, ops)
    const principal = principalName(request.principal)
    const view = servingView(store, ownership)

    const results: BatchResult[] = new Array(ops.length)
    const storeOps: StoreOp[] = []
    const positions: number[] = []
    let misdirected = false
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as BatchOp
      if (view.access(op.key) !== 'owned') {
        results[i] = misdirectedResult(view)
        misdirected = true
        continue
      }
      storeOps.push(toStoreOp(op, opRequestId(op, i, batchId), principal))
      positions.push(i)
    }

    // Writes go through the group commit (one transaction for the whole batch); a
    // batch of gets only is one read snapshot and takes no write lock.
    const hasWrite = storeOps.some((o) => o.op !== 'get')
    const outcomes: OpOutcome[] = hasWrite ? await writes.submit(storeOps) : store.applyOps(storeOps)

    let maxSeq = 0
    // The answer is bounded like the request: values past maxBatchBytes are not sent (the
    // caller reads those keys alone), so 1000 gets of large values cannot build a huge body.
    let valueBytes = 0
    for (let j = 0; j < outcomes.length; j++) {
      const i = positions[j] as number
      const out = outcomes[j] as OpOutcome
      let { result, seq } = toResult(out, ops[i] as BatchOp, request)
      if (result.value !== undefined) {
        valueBytes += result.value.length
        if (valueBytes > ctx.maxBatchBytes) {
          result = codedResult('batch_too_large', `the batch's answer would exceed ${ctx.maxBatchBytes} bytes; read this key alone`, { maxBytes: ctx.maxBatchBytes })
          seq = 0
        }
      }
      if (result.status === 421) misdirected = true
      results[i] = result
      if (seq > maxSeq) maxSeq = seq
    }
    await replicated(maxSeq)

    countBatch(metrics, ops)
    return answer(request, reply, results, misdirected)
  })

  /** The results in the form the sender asked for: lines for a router, else JSON (with the map when any op was misdirected). */
  function answer (request: FastifyRequest, reply: FastifyReply, results: readonly BatchResult[], misdirected: boolean): FastifyReply {
    if (acceptsBatchLines(request.headers.accept)) {
      let lines = ''
      for (const r of results) lines += resultLine(r)
      return reply.code(200).type(BATCH_LINES_TYPE).send(lines)
    }
    const body: { results: readonly BatchResult[], map?: unknown } = { results }
    if (misdirected) body.map = ownership.installed()
    return reply.code(200).type('application/json').send(JSON.stringify(body))
  }

  /** One op's result and the seq it must wait for (0: none). */
  function toResult (out: OpOutcome, op: BatchOp, request: FastifyRequest): { result: BatchResult, seq: number } {
    if (out.kind === 'read') {
      if (out.found !== undefined) {
        // Exactly these fields: the lines form writes a found get field by field (batch-lines.ts foundLine).
        const result: BatchResult = { status: 200, etag: formatEtag(out.found.version), contentType: out.found.contentType, value: out.found.value.toString('base64') }
        const ttl = formatRemainingTtl(out.found.expiresAt, Date.now())
        if (ttl !== undefined) result.ttl = ttl
        return { result, seq: out.found.seq }
      }
      const result = codedResult('not_found', 'no value is stored under this key')
      // Not even an absence is shown before it is replicated: a failover could undo it.
      if (out.tombstoneSeq !== undefined) result.tombstone = true
      return { result, seq: out.tombstoneSeq ?? 0 }
    }
    if (out.kind === 'refused') {
      const err = out.error
      if (err instanceof ShardKvError && err.code === 'misdirected') return { result: misdirectedResult(ownership.get()), seq: 0 }
      if (err instanceof ShardKvError) return { result: errorResult(err), seq: 0 }
      request.log.error({ err, event: 'batch-op-failed', key: op.key }, 'a batch op failed')
      return { result: codedResult('internal', 'internal error'), seq: 0 }
    }
    const w = out.outcome
    if (!w.ok) {
      return { result: codedResult('precondition_failed', 'the precondition on the current version failed', { current: w.current === undefined ? null : formatEtag(w.current) }), seq: 0 }
    }
    if (op.op === 'delete') return { result: { status: 204 }, seq: w.seq }
    return { result: { status: w.existed ? 200 : 201, etag: formatEtag(w.version) }, seq: w.seq }
  }
}
