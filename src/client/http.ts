import { request, type Dispatcher } from '../http/undici'
import { ShardKvError, errorCodeOf } from '../protocol/errors'
import { JSON_ANSWER_MAX_BYTES } from '../protocol/limits'
import { readCapped } from '../http/capped-body'

/**
 * JSON over HTTP for the client, scripts and coordinator: one place that turns an
 * error response into a ShardKvError carrying the server's code. At most `maxBytes`
 * (default JSON_ANSWER_MAX_BYTES) of the answer is read; past it, 502 upstream_error.
 */
export async function jsonRequest<T> (
  url: string,
  options: { method?: Dispatcher.HttpMethod, body?: unknown, dispatcher?: Dispatcher, timeoutMs?: number, headers?: Readonly<Record<string, string>>, maxBytes?: number, signal?: AbortSignal } = {}
): Promise<{ status: number, body: T }> {
  const res = await request(url, {
    method: options.method ?? 'GET',
    headers: options.body !== undefined ? { ...options.headers, 'content-type': 'application/json' } : { ...options.headers },
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    dispatcher: options.dispatcher,
    signal: options.signal,
    headersTimeout: options.timeoutMs ?? 10_000,
    bodyTimeout: options.timeoutMs ?? 10_000
  })
  const text = (await readCapped(res, options.maxBytes ?? JSON_ANSWER_MAX_BYTES, `${options.method ?? 'GET'} ${url}`)).toString('utf8')
  let parsed: unknown
  try {
    parsed = text === '' ? undefined : JSON.parse(text)
  } catch {
    throw new ShardKvError('upstream_error', `${options.method ?? 'GET'} ${url}: ${res.statusCode} with a body that is not JSON`)
  }
  if (res.statusCode >= 400) {
    const body = parsed as { error?: unknown, message?: unknown } | undefined
    const code = errorCodeOf(res.statusCode, body)
    const message = typeof body?.message === 'string' ? body.message : `HTTP ${res.statusCode}`
    throw new ShardKvError(code, message, { status: res.statusCode })
  }
  return { status: res.statusCode, body: parsed as T }
}
