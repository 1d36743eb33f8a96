import { codedResult, getAnswers, type BatchOpName, type BatchResult } from '../src/protocol/batch'
import { errorBody, errorCodeOf } from '../src/protocol/errors'
import { isBatchLines, readResultLines, type RelayedResult } from '../src/protocol/batch-lines'
import type { ForwardResult } from './forward'

/**
 * Turning shard answers into batch results, without I/O (unit-tested directly).
 *
 * Fields that are shard → router signals only (`tombstone`: no fallback read needed;
 * `map`: the node's installed map on a misdirected op) never reach the client: the
 * router acts on them or not, and a client result means the same whichever path the op took.
 */

export type ShardBatchReply =
  /** 200: one result per op sent, in order. */
  | { kind: 'ok', results: BatchResult[] }
  /** 421 for the whole sub-batch: the node is not the primary, its lease ran out, or its map differs. */
  | { kind: 'misdirected' }
  /** Any other answer: that error is the result of each op of the sub-batch. */
  | { kind: 'failed', result: BatchResult }

const INTERNAL_FIELDS = new Set(['tombstone', 'map', 'status', 'error', 'message'])

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function validStatus (v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599
}

/** A shard's error body (or whatever it sent instead) as an op's result with the shard's status. */
export function errorFromShard (status: number, body: unknown): BatchResult {
  const b = isObject(body) ? body : {}
  const code = errorCodeOf(status, b)
  const message = typeof b.message === 'string' ? b.message : `the shard answered HTTP ${status}`
  const result: BatchResult = { status, error: code, message }
  for (const [k, v] of Object.entries(b)) if (!INTERNAL_FIELDS.has(k)) result[k] = v
  return result
}

/** One op's result from a shard's 200 answer, cleaned of shard → router fields. */
function fromShardResult (r: Record<string, unknown>): BatchResult {
  const out: BatchResult = { status: r.status as number }
  for (const [k, v] of Object.entries(r)) if (k !== 'tombstone' && k !== 'map' && k !== 'status') out[k] = v
  return out
}

/** Interprets a shard's answer to POST /batch carrying `count` ops. */
export function readShardBatchReply (status: number, text: string, count: number, url: string): ShardBatchReply {
  if (status === 421) return { kind: 'misdirected' }
  const body = parseJson(text)
  if (status !== 200) return { kind: 'failed', result: errorFromShard(status, body) }
  const results = isObject(body) ? body.results : undefined
  if (!Array.isArray(results) || results.length !== count || !results.every((r) => isObject(r) && validStatus(r.status))) {
    return { kind: 'failed', result: malformed(url, count) }
  }
  return { kind: 'ok', results: (results as Array<Record<string, unknown>>).map(fromShardResult) }
}

export type RelayedBatchReply =
  /** 200: one result per op sent, in order, each as the client's JSON text. */
  | { kind: 'ok', results: RelayedResult[] }
  | Exclude<ShardBatchReply, { kind: 'ok' }>

/**
 * A shard's answer to the router's POST /batch, for relaying: a 200 in the lines form it
 * asks for (src/protocol/batch-lines.ts) is split without parsing; any other answer —
 * JSON from a node that does not know the form, errors — is read by readShardBatchReply.
 */
export function relayShardBatchReply (status: number, contentType: string | string[] | undefined, text: string, count: number, url: string): RelayedBatchReply {
  if (status !== 200 || !isBatchLines(contentType)) {
    const reply = readShardBatchReply(status, text, count, url)
    return reply.kind === 'ok' ? { kind: 'ok', results: reply.results.map((r) => ({ status: r.status, json: JSON.stringify(r) })) } : reply
  }
  const results = readResultLines(text, count)
  if (results === undefined) return { kind: 'failed', result: malformed(url, count) }
  return { kind: 'ok', results }
}

function malformed (url: string, count: number): BatchResult {
  return codedResult('upstream_error', `shard ${url} answered the batch with a malformed body (want ${count} results)`)
}

/** The single-key path's answer for one op, as the batch result the shard would have given. */
export function forwardedToBatchResult (op: BatchOpName, res: ForwardResult): BatchResult {
  if (res.status >= 400) return errorFromShard(res.status, parseJson(res.body.toString('utf8')))
  const out: BatchResult = { status: res.status }
  if (res.etag !== undefined) out.etag = res.etag
  if (op === 'get' && res.status === 200) {
    if (res.contentType !== undefined) out.contentType = res.contentType
    out.value = res.body.toString('base64')
    if (res.ttl !== undefined) out.ttl = res.ttl
  }
  return out
}

/** The Content-Type a shard node gives its JSON answers (fastify's, for a string body). */
const SHARD_JSON_TYPE = 'application/json; charset=utf-8'

/**
 * A shard's answer to a coalesced batch of gets (see read-coalescer.ts), as the result
 * each single GET would have relayed — same status, Content-Type, ETag, node and body —
 * for the reads it can stand for (see getAnswers); undefined for the others.
 */
export function coalescedReadResults (status: number, body: Buffer, count: number, node: string | string[] | undefined): Array<ForwardResult | undefined> {
  const nodeId = typeof node === 'string' ? node : undefined
  return getAnswers(status, body, count).map((a): ForwardResult | undefined => {
    if (a === undefined) return undefined
    if (a.found) {
      const found: ForwardResult = { status: 200, contentType: a.contentType, contentLength: String(a.value.length), etag: a.etag, node: nodeId, body: a.value, retries: 0, tombstone: false }
      if (a.ttl !== undefined) found.ttl = a.ttl
      return found
    }
    const text = Buffer.from(errorBody('not_found', a.message))
    return { status: 404, contentType: SHARD_JSON_TYPE, contentLength: String(text.length), etag: undefined, node: nodeId, body: text, retries: 0, tombstone: a.tombstone }
  })
}
