import { batchResultsOf, getAnswers, writeApplied, type BatchOpWire, type BatchResult } from '../protocol/batch'
import { DEFAULT_CONTENT_TYPE, HEADER } from '../protocol/wire'
import { errorObject } from '../protocol/errors'
import { errorFromResponse, UnavailableError, type KvError } from './errors'

/**
 * The pure half of the client: one shape (OpResult) for the outcome of an operation
 * whether it came back as a single-key HTTP response or as one result of a batch, and
 * the functions that turn it into what the API returns. No I/O here.
 */

export interface KvEntry {
  value: Buffer
  contentType: string
  /** The version, quotes included: pass it back as `ifMatch`. */
  etag: string
  /** Seconds the value has left (millisecond precision) when it was read; absent: it does not expire. */
  ttl?: number
}

export interface PutResult {
  etag: string
  /** True when the key had no value before (201 Created). */
  created: boolean
}

/** The outcome of one operation, as either transport delivers it. */
export interface OpResult {
  status: number
  etag?: string
  contentType?: string
  /** The value of a successful get. */
  value?: Buffer
  /** A get's remaining X-Shardkv-TTL text. */
  ttl?: string
  /** The parsed JSON error body of a failed operation. */
  error?: unknown
}

function header (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function parseJson (body: Buffer): unknown {
  if (body.length === 0) return undefined
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    return { message: body.toString('utf8').slice(0, 200) }
  }
}

/** A single-key HTTP response as an OpResult. */
export function fromHttp (status: number, headers: Record<string, string | string[] | undefined>, body: Buffer): OpResult {
  const r: OpResult = { status }
  const etag = header(headers.etag)
  if (etag !== undefined) r.etag = etag
  const ct = header(headers['content-type'])
  if (ct !== undefined) r.contentType = ct
  const ttl = header(headers[HEADER.ttl])
  if (ttl !== undefined) r.ttl = ttl
  if (status >= 400) r.error = parseJson(body)
  else if (status === 200) r.value = body
  return r
}

/** One result of a batch response as an OpResult. */
export function fromBatchResult (raw: BatchResult | undefined): OpResult {
  if (raw === undefined || typeof raw !== 'object' || raw === null || typeof raw.status !== 'number') {
    return { status: 502, error: errorObject('upstream_error', 'the batch response has no result for this operation') }
  }
  const r: OpResult = { status: raw.status }
  if (typeof raw.etag === 'string') r.etag = raw.etag
  if (typeof raw.contentType === 'string') r.contentType = raw.contentType
  if (typeof raw.ttl === 'string') r.ttl = raw.ttl
  if (raw.status >= 400) r.error = raw
  else if (typeof raw.value === 'string') r.value = Buffer.from(raw.value, 'base64')
  return r
}

/** The Content-Type of a node's JSON answers (an error body). */
const NODE_JSON_TYPE = 'application/json; charset=utf-8'

/**
 * A node's answer to a coalesced batch of gets, as the OpResult each single GET would
 * have given, for the reads it can stand for (see getAnswers); undefined for the others,
 * which are sent again alone.
 */
export function coalescedGetResults (status: number, body: Buffer, count: number): Array<OpResult | undefined> {
  return getAnswers(status, body, count).map((a): OpResult | undefined => {
    if (a === undefined) return undefined
    if (a.found) return { status: 200, etag: a.etag, contentType: a.contentType, value: a.value, ...(a.ttl !== undefined ? { ttl: a.ttl } : {}) }
    // The error body a single GET gets, without the batch's shard → router fields.
    return { status: 404, contentType: NODE_JSON_TYPE, error: errorObject('not_found', a.message) }
  })
}

/**
 * A node's answer to a coalesced batch of writes, as the OpResult each single write would
 * have given, for the writes it certainly applied (writeApplied); undefined for the others,
 * which are sent again alone with the same request id.
 */
export function coalescedWriteResults (status: number, body: Buffer, methods: ReadonlyArray<'PUT' | 'DELETE'>): Array<OpResult | undefined> {
  const results = batchResultsOf(status, body, methods.length)
  if (results === undefined) return []
  return results.map((raw: unknown, i): OpResult | undefined => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined
    const r = raw as BatchResult
    const method = methods[i] ?? 'PUT'
    if (!writeApplied(method, r)) return undefined
    return method === 'DELETE' ? { status: 204 } : { status: r.status, etag: r.etag as string }
  })
}

/** A transport failure as the result of an operation that never got an answer. */
export function unavailableResult (message: string): OpResult {
  return { status: 503, error: errorObject('unavailable', message) }
}

export function errorOf (r: OpResult): KvError {
  return errorFromResponse({ status: r.status, body: r.error })
}

function unexpected (r: OpResult, what: string): KvError {
  return new UnavailableError('upstream_error', `${what}: unexpected status ${r.status}`, undefined, 502)
}

export function toEntry (r: OpResult): KvEntry | KvError {
  if (r.status >= 400) return errorOf(r)
  if (r.status !== 200) return unexpected(r, 'get')
  const entry: KvEntry = { value: r.value ?? Buffer.alloc(0), contentType: r.contentType ?? DEFAULT_CONTENT_TYPE, etag: r.etag ?? '' }
  if (r.ttl !== undefined) entry.ttl = Number(r.ttl)
  return entry
}

export function toPutResult (r: OpResult): PutResult | KvError {
  if (r.status >= 400) return errorOf(r)
  if (r.status !== 200 && r.status !== 201) return unexpected(r, 'put')
  return { etag: r.etag ?? '', created: r.status === 201 }
}

export function toDeleteResult (r: OpResult): KvError | undefined {
  if (r.status >= 400) return errorOf(r)
  if (r.status !== 204 && r.status !== 200) return unexpected(r, 'delete')
  return undefined
}

/** Rough size of an op in a JSON batch body, to stay under the server's byte limit. */
export function wireSize (op: BatchOpWire): number {
  return 64 + Buffer.byteLength(op.key) * 3 + (op.value?.length ?? 0) + (op.contentType?.length ?? 0) +
    (op.ifMatch?.length ?? 0) + (op.ifNoneMatch?.length ?? 0) + (op.rid?.length ?? 0)
}

/**
 * Splits ops into consecutive chunks of at most `maxOps` ops and about `maxBytes` of
 * JSON (an op larger than `maxBytes` alone is a chunk of its own: the server then
 * answers it with its own limit error). Returns the start index of each chunk.
 */
export function chunkOps (ops: readonly BatchOpWire[], maxOps: number, maxBytes: number): Array<{ start: number, ops: BatchOpWire[] }> {
  const chunks: Array<{ start: number, ops: BatchOpWire[] }> = []
  let current: BatchOpWire[] = []
  let start = 0
  let bytes = 16
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as BatchOpWire
    const size = wireSize(op)
    if (current.length > 0 && (current.length >= maxOps || bytes + size > maxBytes)) {
      chunks.push({ start, ops: current })
      current = []
      start = i
      bytes = 16
    }
    current.push(op)
    bytes += size
  }
  if (current.length > 0) chunks.push({ start, ops: current })
  return chunks
}
