import { ShardKvError, isErrorCode, type ErrorCode } from '../protocol/errors'

/**
 * The client's typed errors. Each one carries the server's code (`.code`), the HTTP
 * status it came with (`.status`) and any extra fields of its JSON body (`.details`),
 * so callers can branch on the class or on the code alike.
 */

export class KvError extends ShardKvError {
  constructor (code: ErrorCode, message: string, details?: Record<string, unknown>, status?: number) {
    super(code, message, details)
    this.name = 'KvError'
    // The server's status wins over the table's: a code it sends with another status
    // (or a status without a known code) is reported as it arrived.
    if (status !== undefined && status !== this.status) (this as { status: number }).status = status
  }
}

export class NotFoundError extends KvError {
  constructor (message = 'no value is stored under this key', details?: Record<string, unknown>) {
    super('not_found', message, details, 404)
    this.name = 'NotFoundError'
  }
}

export class PreconditionFailedError extends KvError {
  /** The key's current ETag (quotes included), or null when the key is absent. */
  readonly current: string | null

  constructor (message: string, current: string | null, details?: Record<string, unknown>) {
    super('precondition_failed', message, details, 412)
    this.name = 'PreconditionFailedError'
    this.current = current
  }
}

export class ValueTooLargeError extends KvError {
  constructor (code: 'value_too_large' | 'batch_too_large', message: string, details?: Record<string, unknown>) {
    super(code, message, details, 413)
    this.name = 'ValueTooLargeError'
  }
}

/**
 * No owner answered: the server said so (503/502/504), or the connection failed and
 * retries ran out. For a write the outcome is unknown: it may still take effect.
 */
export class UnavailableError extends KvError {
  constructor (code: 'unavailable' | 'upstream_error' | 'upstream_timeout', message: string, details?: Record<string, unknown>, status?: number) {
    super(code, message, details, status)
    this.name = 'UnavailableError'
  }
}

/** The code a response stands for when its body names none we know. */
function codeForStatus (status: number): ErrorCode {
  switch (status) {
    case 404: return 'not_found'
    case 412: return 'precondition_failed'
    case 413: return 'value_too_large'
    case 421: return 'misdirected'
    case 502: return 'upstream_error'
    case 504: return 'upstream_timeout'
    default: return status >= 500 ? 'unavailable' : 'invalid_request'
  }
}

/**
 * The one mapping from an error response (`status` and its parsed JSON body, or
 * anything else the server sent) to a typed error. Pure.
 */
export function errorFromResponse (res: { status: number, body: unknown }): KvError {
  const body = typeof res.body === 'object' && res.body !== null && !Array.isArray(res.body)
    ? res.body as Record<string, unknown>
    : {}
  const { error, message: rawMessage, status: _status, ...rest } = body
  const code: ErrorCode = isErrorCode(error) ? error : codeForStatus(res.status)
  const message = typeof rawMessage === 'string' && rawMessage !== '' ? rawMessage : `HTTP ${res.status} (${code})`
  const details = Object.keys(rest).length > 0 ? rest : undefined
  switch (code) {
    case 'not_found':
      return new NotFoundError(message, details)
    case 'precondition_failed':
      return new PreconditionFailedError(message, typeof rest.current === 'string' ? rest.current : null, details)
    case 'value_too_large':
    case 'batch_too_large':
      return new ValueTooLargeError(code, message, details)
    case 'unavailable':
    case 'upstream_error':
    case 'upstream_timeout':
      return new UnavailableError(code, message, details, res.status)
    default:
      return new KvError(code, message, details, res.status)
  }
}

/** A ShardKvError raised locally (e.g. by key validation) as the matching client error. */
export function toKvError (err: ShardKvError): KvError {
  if (err instanceof KvError) return err
  return errorFromResponse({ status: err.status, body: err.toBody() })
}
