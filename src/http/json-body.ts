import type { FastifyRequest } from 'fastify'
import { ShardKvError } from '../protocol/errors'

const JSON_MEDIA_TYPE = /^application\/json\s*(;|$)/i

/**
 * A JSON request body, which the raw-bytes parser hands over as a Buffer. JSON
 * endpoints take `Content-Type: application/json` only: a browser sends that cross-site
 * only after a CORS preflight, which nothing here answers, so no page a user visits can
 * post a batch or an admin call as an HTML form would.
 */
export function jsonBytes (request: FastifyRequest): unknown {
  const type = request.headers['content-type']
  if (type === undefined || !JSON_MEDIA_TYPE.test(type)) throw new ShardKvError('unsupported', 'this endpoint takes Content-Type: application/json')
  const body = request.body
  if (!Buffer.isBuffer(body) || body.length === 0) throw new ShardKvError('invalid_request', 'a JSON body is required')
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new ShardKvError('invalid_request', 'the body is not valid JSON')
  }
}

/** Admin and internal endpoints take JSON objects. */
export function jsonBody (request: FastifyRequest): Record<string, unknown> {
  const parsed = jsonBytes(request)
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ShardKvError('invalid_request', 'the body must be a JSON object')
  return parsed as Record<string, unknown>
}

export function integer (value: unknown, name: string, min: number, max: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ShardKvError('invalid_request', `${name} must be an integer in [${min}, ${max}]`)
  }
  return value
}
