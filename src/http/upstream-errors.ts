/**
 * What a failed upstream call means for the retry loop.
 *
 * 'retry': the connection failed (refused, reset, closed under us, or never
 *   established). Safe to repeat: the shard either never saw the request or
 *   dedupes it by its request id.
 * 'timeout': the shard took the request and did not answer in time. Not retried
 *   here: it may still be working on it, and piling more work onto a slow node
 *   makes it slower.
 * 'fatal': anything else (a malformed response, a bug); answered as 502.
 */
export type UpstreamFailure = 'retry' | 'timeout' | 'fatal'

const RETRYABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  // undici: "other side closed" and other socket failures; a pool client closed under us; connect timeout.
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT'
])

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export function upstreamErrorCode (err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  // Happy-eyeballs connects fail with an AggregateError of per-address errors.
  const inner = (err as { errors?: unknown }).errors
  if (Array.isArray(inner)) {
    for (const e of inner) {
      const c = upstreamErrorCode(e)
      if (c !== undefined) return c
    }
  }
  const cause = (err as { cause?: unknown }).cause
  return cause === undefined ? undefined : upstreamErrorCode(cause)
}

export function classifyUpstreamError (err: unknown): UpstreamFailure {
  const code = upstreamErrorCode(err)
  if (code === undefined) return 'fatal'
  if (RETRYABLE.has(code)) return 'retry'
  if (TIMEOUTS.has(code)) return 'timeout'
  return 'fatal'
}

/** A short text for messages, or with `codeOnly` a bounded label for metrics. */
export function describeUpstreamError (err: unknown, codeOnly = false): string {
  const code = upstreamErrorCode(err)
  if (codeOnly) return code !== undefined && RETRYABLE.has(code) ? code : 'other'
  const message = err instanceof Error ? err.message : String(err)
  if (code === undefined || message.includes(code)) return message
  return `${code}: ${message}`
}
