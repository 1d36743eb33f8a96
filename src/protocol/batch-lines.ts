import type { BatchResult } from './batch'

/**
 * The relayable form of a shard node's answer to `POST /batch` (router ↔ node only:
 * clients see the JSON of batch.ts, unchanged). A router asks for it with
 * `Accept: application/vnd.shardkv.batch-lines`; a node that knows the form answers a 200
 * with that Content-Type and one line per op, in op order:
 *
 *   <status> <the op's result exactly as the client will see it, JSON>\n
 *
 * Why: the router splits a client's batch among groups and must put every result back in
 * the client's order. Parsing each group's JSON into objects and serialising them again
 * was most of the router's own work per key; with one line per result it finds each result
 * with one indexOf and relays its text as is. JSON text never holds a raw newline (string
 * escapes cover it), so a newline ends a result unambiguously, and the status in front
 * says without parsing which ops were misdirected (421: the router retries those).
 * Node → router signals that never reach a client (a 404's `tombstone`, the top-level
 * `map`) are not sent: the router's batch path does not use them.
 *
 * Anything but a 200 is the usual JSON error body. A node that does not know the form
 * answers JSON, which the router still reads (a rolling upgrade has both for a while).
 */

export const BATCH_LINES_TYPE = 'application/vnd.shardkv.batch-lines'

/** True when a request's Accept header asks for the lines form (only ever sent alone, by routers). */
export function acceptsBatchLines (accept: string | undefined): boolean {
  return accept === BATCH_LINES_TYPE
}

/** True when a response's Content-Type says it is in the lines form. */
export function isBatchLines (contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && contentType.startsWith(BATCH_LINES_TYPE)
}

/** A result as the client sees it, as JSON text: status first, without the node → router fields. */
export function resultJson (r: BatchResult): string {
  if (r.tombstone === undefined && r.map === undefined) return JSON.stringify(r)
  const { tombstone: _t, map: _m, ...client } = r
  return JSON.stringify(client)
}

/** One op's line. */
export function resultLine (r: BatchResult): string {
  if (r.status === 200 && typeof r.value === 'string' && typeof r.etag === 'string' && typeof r.contentType === 'string') return foundLine(r.etag, r.contentType, r.value, r.ttl)
  return `${r.status} ${resultJson(r)}\n`
}

/**
 * A get that found a value — the bulk of most answers — written field by field: half the
 * CPU of JSON.stringify on an object per result. Only a found get has a `value`, and
 * nothing but these fields (shards/batch-api.ts builds it); the text is what
 * JSON.stringify gives for that object (test/unit/router-batch-results.test.ts).
 */
function foundLine (etag: string, contentType: string, value: string, ttl: string | undefined): string {
  const line = `200 {"status":200,"etag":${JSON.stringify(etag)},"contentType":${JSON.stringify(contentType)},"value":${JSON.stringify(value)}`
  return ttl === undefined ? `${line}}\n` : `${line},"ttl":${JSON.stringify(ttl)}}\n`
}

/** One result of a lines answer: its status and its client JSON, not parsed. */
export interface RelayedResult {
  status: number
  json: string
}

const ZERO = 48
const NEWLINE = '\n'

function digit (text: string, at: number): number {
  const d = text.charCodeAt(at) - ZERO
  return d >= 0 && d <= 9 ? d : -1
}

/**
 * Splits a lines answer into `count` results; undefined when it is not exactly that
 * (wrong count, a line without a 3-digit status in 100..599 and a JSON object after it),
 * which the router treats as a malformed answer. The JSON itself is not checked: it comes
 * from an authenticated node that wrote it with JSON.stringify.
 */
export function readResultLines (text: string, count: number): RelayedResult[] | undefined {
  const out: RelayedResult[] = new Array(count)
  let at = 0
  for (let i = 0; i < count; i++) {
    const end = text.indexOf(NEWLINE, at)
    if (end === -1) return undefined
    const a = digit(text, at)
    const b = digit(text, at + 1)
    const c = digit(text, at + 2)
    if (a < 1 || a > 5 || b < 0 || c < 0 || text.charCodeAt(at + 3) !== 32 || text.charCodeAt(at + 4) !== 123 || text.charCodeAt(end - 1) !== 125) return undefined
    out[i] = { status: a * 100 + b * 10 + c, json: text.slice(at + 4, end) }
    at = end + 1
  }
  return at === text.length ? out : undefined
}

/** The client's body from each op's result JSON, in the client's order. */
export function resultsBody (results: readonly string[]): string {
  return `{"results":[${results.join(',')}]}`
}
