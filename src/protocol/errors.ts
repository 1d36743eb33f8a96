/**
 * Error codes of the HTTP API: the one catalogue, as fastify's lib/errors.js. Every
 * error response is `{"error": "<code>", "message": "<human text>"}` (plus the fields
 * a code documents, e.g. gap's `position`) with the status below. Routes throw a
 * ShardKvError (or a domain error that is one) and the central handler in
 * src/http/server.ts answers it; the few raw-response paths (the GET fast path, the
 * parser's client errors, 100-continue refusals) build bodies with errorBody below.
 * test/unit/error-path.test.ts fails on an error body built anywhere else.
 */
export const ERROR_STATUS = {
  invalid_key: 400,
  invalid_header: 400,
  invalid_request: 400,
  /** An `X-Shardkv-TTL` header or batch `ttl` that is not a number of seconds in range (src/protocol/ttl.ts). */
  invalid_ttl: 400,
  /** No credential, or one that is not valid (peer secret, client token, client certificate). */
  unauthenticated: 401,
  /** A valid credential whose roles or key prefix do not cover the request. */
  forbidden: 403,
  not_found: 404,
  no_route: 404,
  method_not_allowed: 405,
  conflict: 409,
  stale_epoch: 409,
  /** A replication shipment or lease from a term the group has left. */
  stale_term: 409,
  /** A shipment that does not continue where the replica stands (the answer carries its `position`). */
  gap: 409,
  /**
   * A map, lease or handoff from a coordinator whose leadership fence is older than one
   * the node has seen: it was deposed (src/registry/fence.ts).
   */
  stale_fence: 409,
  /** A shipment to a node that is not a replica of that group. */
  not_replica: 409,
  group_exists: 409,
  rebalance_running: 409,
  last_group: 409,
  no_such_group: 404,
  /** A watch cursor older than the change feed the nodes still hold (the answer carries a `restart` cursor). */
  cursor_compacted: 410,
  /** More watch streams than one token may hold open. */
  too_many_streams: 429,
  /** A watch stream whose client did not keep up: it ends, and the client resumes from its last event's id. */
  stream_overflow: 503,
  request_timeout: 408,
  precondition_failed: 412,
  value_too_large: 413,
  batch_too_large: 413,
  headers_too_large: 431,
  /** A request id already applied to another operation (method, key, value, preconditions). */
  idempotency_key_reused: 422,
  unsupported: 415,
  /** Past a per-token or per-address rate limit; the answer carries Retry-After. */
  rate_limited: 429,
  misdirected: 421,
  unavailable: 503,
  /** A standby coordinator (etcd registry): another one leads; the message names it when known. */
  not_leader: 503,
  upstream_error: 502,
  upstream_timeout: 504,
  internal: 500,
  /**
   * A request id older than the node's record of applied ids: an earlier attempt with
   * it may have applied, and that can no longer be told. A 5xx because the outcome is
   * unknown (a 4xx would say nothing changed); not retryable with the same id.
   */
  request_id_expired: 500
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

export interface ErrorBody {
  error: ErrorCode
  message: string
  [extra: string]: unknown
}

/** A typed, coded error that maps to one HTTP response. */
export class ShardKvError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined
  /** Response headers the answer must carry (`WWW-Authenticate` on a 401, `Retry-After` on a 429). */
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor (code: ErrorCode, message: string, details?: Record<string, unknown>, headers?: Readonly<Record<string, string>>) {
    super(message)
    this.name = 'ShardKvError'
    this.code = code
    this.status = ERROR_STATUS[code]
    this.details = details
    this.headers = headers
  }

  toBody (): ErrorBody {
    return errorObject(this.code, this.message, this.details)
  }
}

export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_STATUS, value)
}

/** An error body as an object; `details` cannot override the code or the message. */
export function errorObject (code: ErrorCode, message: string, details?: Record<string, unknown>): ErrorBody {
  return { ...details, error: code, message }
}

/** An error body as JSON text, for the paths that write raw responses. */
export function errorBody (code: ErrorCode, message: string, details?: Record<string, unknown>): string {
  return JSON.stringify(errorObject(code, message, details))
}

/** The code of an error answer from another shardkv process: the one its body names, else one that fits its status. */
export function errorCodeOf (status: number, body: unknown): ErrorCode {
  const named = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined
  return isErrorCode(named) ? named : status >= 500 ? 'upstream_error' : 'invalid_request'
}
