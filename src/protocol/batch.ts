import { ERROR_STATUS, errorObject, ShardKvError, type ErrorCode } from './errors'
import { validateKey } from './key'
import { parseEtagList, type WriteConditions } from './preconditions'
import { parseRequestId, REQUEST_ID_GRAMMAR } from './request-id'
import { storedContentType } from './content-type'
import { parseTtl } from './ttl'

/**
 * Batches: one request carrying many gets, puts and deletes, answered with one result
 * per operation in the same order. The same body is accepted by the router (which splits
 * it by owner group) and by shard nodes (which apply their share in one transaction), so
 * a direct client can send a group's share straight to its primary.
 *
 *   POST /batch  {"ops": [
 *     {"op": "get",    "key": "a"},
 *     {"op": "put",    "key": "b", "value": "<base64>", "contentType": "text/plain",
 *                      "ifMatch": "\"<etag>\"" | "*", "ifNoneMatch": "*", "ttl": 30},
 *     {"op": "delete", "key": "c", "ifMatch": "\"<etag>\""}
 *   ]}
 *   → 200 {"results": [{"status": 200, "etag": "\"…\"", "contentType": "…", "value": "<base64>", "ttl": "12.345"},
 *                      {"status": 201, "etag": "\"…\""}, {"status": 204}, …]}
 *
 * A failed operation has an error result (`{"status": 412, "error": "precondition_failed",
 * "message": …, "current": "\"…\""}`) and does not fail the others. Malformed input (not
 * JSON, an unknown op, a bad key or header, a value over the limit, too many ops) refuses
 * the whole batch with a 4xx before anything is applied. `ifMatch`/`ifNoneMatch` take the
 * same text as the HTTP headers.
 *
 * `rid` (optional, per op) is the op's request id, so a retried batch applies each write
 * once; the router sets it to `<request id>-<index in the client's batch>`, which stays the
 * same however the batch is split between groups. Shard nodes accept it; clients need not.
 */

export type BatchOpName = 'get' | 'put' | 'delete'

export interface BatchOpWire {
  op: BatchOpName
  key: string
  value?: string
  contentType?: string
  ifMatch?: string
  ifNoneMatch?: string
  rid?: string
  /** Seconds the value lives (puts only; src/protocol/ttl.ts). */
  ttl?: number
}

/** One operation, validated and decoded. */
export interface BatchOp {
  op: BatchOpName
  key: string
  /** Decoded value (puts only). */
  value: Buffer | undefined
  contentType: string | undefined
  /** The header texts, kept to forward unchanged. */
  ifMatch: string | undefined
  ifNoneMatch: string | undefined
  conditions: WriteConditions
  rid: string | undefined
  /** The put's time to live in ms (undefined: none). */
  ttlMs: number | undefined
}

export interface BatchResult {
  status: number
  etag?: string
  contentType?: string
  /** base64, for a successful get. */
  value?: string
  /** A get's remaining time to live, as the X-Shardkv-TTL header carries it (absent: no expiry). */
  ttl?: string
  /** Present on a 404 that comes from a delete (shard → router: no fallback read is needed). */
  tombstone?: boolean
  error?: string
  message?: string
  [extra: string]: unknown
}

export interface BatchLimits {
  maxOps: number
  /** Largest single value (decoded bytes). */
  maxValueBytes: number
}

export const BATCH_DEFAULTS = { maxOps: 1000, maxBytes: 16 * 1024 * 1024 } as const

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** A get's conditions: none, shared rather than allocated per op. */
const NO_CONDITIONS: WriteConditions = Object.freeze({})

function invalid (index: number, message: string): ShardKvError {
  return new ShardKvError('invalid_request', `ops[${index}]: ${message}`, { index })
}

function optionalString (raw: Record<string, unknown>, name: string, index: number): string | undefined {
  const v = raw[name]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw invalid(index, `${name} must be a string`)
  return v
}

/**
 * Validates a parsed batch body. Throws a ShardKvError (4xx) for anything malformed, so
 * that a bad batch changes nothing.
 */
export function parseBatch (body: unknown, limits: BatchLimits): BatchOp[] {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { ops?: unknown }).ops)) {
    throw new ShardKvError('invalid_request', 'a batch is a JSON object {"ops": [...]}')
  }
  const raw = (body as { ops: unknown[] }).ops
  if (raw.length === 0) throw new ShardKvError('invalid_request', 'a batch needs at least one op')
  if (raw.length > limits.maxOps) {
    throw new ShardKvError('batch_too_large', `a batch holds at most ${limits.maxOps} ops, this one has ${raw.length}`, { maxOps: limits.maxOps })
  }
  const ops: BatchOp[] = new Array(raw.length)
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw invalid(i, 'an op is a JSON object')
    const o = r as Record<string, unknown>
    const op = o.op
    if (op !== 'get' && op !== 'put' && op !== 'delete') throw invalid(i, 'op must be "get", "put" or "delete"')
    const key = o.key
    if (typeof key !== 'string') throw invalid(i, 'key must be a string')
    try {
      validateKey(key)
    } catch (err) {
      throw new ShardKvError('invalid_key', `ops[${i}]: ${(err as Error).message}`, { index: i })
    }
    const ifMatch = optionalString(o, 'ifMatch', i)
    const ifNoneMatch = optionalString(o, 'ifNoneMatch', i)
    const rid = optionalString(o, 'rid', i)
    if (rid !== undefined && parseRequestId(rid) === undefined) throw invalid(i, `rid must be ${REQUEST_ID_GRAMMAR}`)
    let conditions: WriteConditions = NO_CONDITIONS
    if (op === 'get') {
      if (ifMatch !== undefined) throw invalid(i, 'a get takes no ifMatch')
      if (o.value !== undefined) throw invalid(i, 'a get takes no value')
    } else {
      try {
        conditions = { ifMatch: parseEtagList(ifMatch, 'ifMatch'), ifNoneMatch: parseEtagList(ifNoneMatch, 'ifNoneMatch') }
      } catch (err) {
        throw new ShardKvError('invalid_header', `ops[${i}]: ${(err as Error).message}`, { index: i })
      }
    }
    let value: Buffer | undefined
    let contentType: string | undefined
    if (op !== 'put' && o.ttl !== undefined) throw invalid(i, `a ${op} takes no ttl`)
    let ttlMs: number | undefined
    try {
      ttlMs = parseTtl(o.ttl, `ops[${i}].ttl`)
    } catch (err) {
      throw new ShardKvError('invalid_ttl', (err as Error).message, { index: i })
    }
    if (op === 'put') {
      const v = o.value
      if (typeof v !== 'string' || !BASE64.test(v) || v.length % 4 === 1) throw invalid(i, 'value must be a base64 string')
      // Decoded size is known before decoding: refuse without allocating.
      const bytes = Math.floor(v.length * 3 / 4) - (v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0)
      if (bytes > limits.maxValueBytes) {
        throw new ShardKvError('value_too_large', `ops[${i}]: the value is larger than ${limits.maxValueBytes} bytes`, { index: i })
      }
      value = Buffer.from(v, 'base64')
      try {
        contentType = storedContentType(optionalString(o, 'contentType', i), 'contentType')
      } catch (err) {
        throw invalid(i, (err as Error).message)
      }
    } else if (o.value !== undefined) {
      throw invalid(i, `a ${op} takes no value`)
    }
    ops[i] = { op, key, value, contentType, ifMatch, ifNoneMatch, conditions, rid, ttlMs }
  }
  return ops
}

/** An op as it goes on the wire again (router → shard), with its request id. */
export function toWire (op: BatchOp, rid: string | undefined): BatchOpWire {
  const w: BatchOpWire = { op: op.op, key: op.key }
  if (op.value !== undefined) w.value = op.value.toString('base64')
  if (op.contentType !== undefined && op.op === 'put') w.contentType = op.contentType
  if (op.ifMatch !== undefined) w.ifMatch = op.ifMatch
  if (op.ifNoneMatch !== undefined) w.ifNoneMatch = op.ifNoneMatch
  if (op.ttlMs !== undefined) w.ttl = op.ttlMs / 1000
  const id = rid ?? op.rid
  if (id !== undefined) w.rid = id
  return w
}

/** toWire's JSON text; a plain get (most ops of most batches: no request id, no condition) is written without building an object. */
export function wireJson (op: BatchOp, rid: string | undefined): string {
  if (op.op === 'get' && rid === undefined && op.rid === undefined && op.ifNoneMatch === undefined) return `{"op":"get","key":${JSON.stringify(op.key)}}`
  return JSON.stringify(toWire(op, rid))
}

/** The result for an op that failed with a coded error. */
export function errorResult (err: ShardKvError): BatchResult {
  return codedResult(err.code, err.message, err.details)
}

/** The result for an op refused with a catalogue code (no Error built: one op of many). */
export function codedResult (code: ErrorCode, message: string, details?: Record<string, unknown>): BatchResult {
  // Status first, as every other result has it; set again so that no detail can stand in for it.
  const result: BatchResult = { status: ERROR_STATUS[code], ...errorObject(code, message, details) }
  result.status = ERROR_STATUS[code]
  return result
}

/** What one get of a coalesced batch can stand for: a value, or an absence (404 not_found). */
export type GetAnswer =
  | { found: true, value: Buffer, etag: string, contentType: string, ttl: string | undefined }
  | { found: false, message: string, tombstone: boolean }

/**
 * A node's answer to a batch of gets only (read coalescing), read for what each single
 * GET would have answered: a value (200) or an absence (404). Undefined for any other
 * result, and for every result of an answer that is not a well-formed 200 with `count`
 * results; the sender then reads those keys alone.
 */
/**
 * Whether one result of a coalesced batch of writes (the router's, the direct client's)
 * certainly applied its write: a PUT's 200/201 with a quoted ETag, a DELETE's 204. Only
 * these are taken from the batch; any other outcome is sent again alone with the same
 * request id, and a node that did apply it answers with the first outcome.
 */
export function writeApplied (method: 'PUT' | 'DELETE', r: BatchResult): boolean {
  if (method === 'DELETE') return r.status === 204
  return (r.status === 200 || r.status === 201) && typeof r.etag === 'string' && /^"[^"]+"$/.test(r.etag)
}

/** The `results` of a node's 200 JSON answer to a batch of `count` ops; undefined when it is anything else. */
export function batchResultsOf (status: number, body: Buffer, count: number): unknown[] | undefined {
  if (status !== 200) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  const results = typeof parsed === 'object' && parsed !== null ? (parsed as { results?: unknown }).results : undefined
  return Array.isArray(results) && results.length === count ? results : undefined
}

export function getAnswers (status: number, body: Buffer, count: number): Array<GetAnswer | undefined> {
  const results = batchResultsOf(status, body, count)
  if (results === undefined) return new Array<GetAnswer | undefined>(count).fill(undefined)
  return results.map((raw: unknown): GetAnswer | undefined => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined
    const r = raw as BatchResult
    if (r.status === 200 && typeof r.value === 'string' && typeof r.etag === 'string' && typeof r.contentType === 'string') {
      return { found: true, value: Buffer.from(r.value, 'base64'), etag: r.etag, contentType: r.contentType, ttl: typeof r.ttl === 'string' ? r.ttl : undefined }
    }
    if (r.status === 404 && r.error === 'not_found' && typeof r.message === 'string') return { found: false, message: r.message, tombstone: r.tombstone === true }
    return undefined
  })
}
