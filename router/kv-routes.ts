import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ShardKvError } from '../src/protocol/errors'
import { keyFromUrl } from '../src/protocol/key'
import { parseEtagList } from '../src/protocol/preconditions'
import { HEADER, KV_PREFIX } from '../src/protocol/wire'
import { newRequestId, requireRequestId } from '../src/protocol/request-id'
import { storedContentType } from '../src/protocol/content-type'
import { parseTtl } from '../src/protocol/ttl'
import type { KvForward, ForwardRequest, ForwardResult, KvMethod } from './forward'
import { authorizeKey, principalName } from '../src/auth/client-guard'
import type { Principal } from '../src/auth/tokens'
import { KV_SCHEMAS } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'

/**
 * The data API as the router serves it: check what can be checked without the
 * data (key, precondition headers, value size), then forward to the owner and
 * relay its answer. Checking here keeps bad input from costing a shard round trip
 * and makes the router's 4xx answers the same whichever shard would have owned the key.
 *
 * Requests without a body (GET, HEAD, most DELETEs) are served ahead of fastify by
 * kv-fast-path.ts; this route serves the rest (PUT). Both share `forwardKv` and
 * `answerOf`, so the two paths answer alike byte for byte.
 */

export interface KvRoutesOptions {
  forwarder: KvForward
  maxValueBytes: number
  /** True once the router drains: answers then close their connection. */
  isDraining: () => boolean
}

const EMPTY = Buffer.alloc(0)
const OCTET_STREAM = 'application/octet-stream'

/**
 * Validates a data request (throws `ShardKvError` on bad input or a key outside the
 * principal's roles or prefix) and forwards it to the key's owner. `principal`: the
 * authenticated client (null: clients are not authenticated).
 */
export async function forwardKv (forwarder: KvForward, method: KvMethod, rawUrl: string, h: IncomingHttpHeaders, body: Buffer | null, maxValueBytes: number, principal: Principal | null): Promise<ForwardResult> {
  // The raw URL, not fastify's decoded params: router, shard and client must agree
  // byte for byte on what the key is (see src/protocol/key.ts).
  const key = keyFromUrl(rawUrl)
  if (principal !== null) authorizeKey(principal, method === 'GET' || method === 'HEAD' ? 'read' : 'write', key)
  const ifMatch = h['if-match']
  const ifNoneMatch = h['if-none-match']
  if (ifMatch !== undefined) parseEtagList(ifMatch, 'If-Match')
  if (ifNoneMatch !== undefined) parseEtagList(ifNoneMatch, 'If-None-Match')
  // fastify's parser enforces the limit (before reading, from Content-Length, and
  // while reading); this covers a limit of 0, which fastify cannot express.
  if (body !== null && body.length > maxValueBytes) throw valueTooLarge(maxValueBytes)
  const contentType = body === null ? undefined : storedContentType(h['content-type'])
  // A client that retries a write sends the same request id again, so the shard applies it
  // once; without one, the router's own id still makes its retries apply once.
  const clientId = h[HEADER.requestId]
  const requestId = clientId === undefined ? newRequestId() : requireRequestId(clientId).id
  const req: ForwardRequest = { method, key, requestId, body, contentType, ifMatch, ifNoneMatch, principal: principalName(principal) }
  // Checked here (a 400 costs no shard round trip) but passed on as text: the shard that
  // commits the write turns it into an expiry by its own clock.
  const ttl = h[HEADER.ttl]
  if (method === 'PUT' && ttl !== undefined) {
    parseTtl(ttl, 'X-Shardkv-TTL')
    req.ttl = ttl as string
  }
  return await forwarder.forward(req)
}

export interface KvAnswer {
  headers: OutgoingHttpHeaders
  /** Undefined: the answer has no payload. */
  body: Buffer | undefined
}

/**
 * The client's answer to a relayed result. Content-Length is always explicit, so
 * Node sends the head and the body in one write and never falls back to chunked
 * encoding (headers are written before the body is known).
 */
export function answerOf (result: ForwardResult, method: string, draining: boolean): KvAnswer {
  const headers: OutgoingHttpHeaders = {}
  if (result.contentType !== undefined) headers['content-type'] = result.contentType
  if (result.etag !== undefined) headers.etag = result.etag
  if (result.node !== undefined) headers[HEADER.node] = result.node
  if (result.ttl !== undefined) headers[HEADER.ttl] = result.ttl
  // A stored value is the client's bytes: never let a browser sniff them into something else.
  headers['x-content-type-options'] = 'nosniff'
  if (result.retries > 0) headers[HEADER.retries] = String(result.retries)
  if (draining) headers.connection = 'close'
  const status = result.status
  if (method === 'HEAD') {
    // The size of what GET would send.
    if (result.contentLength !== undefined) headers['content-length'] = result.contentLength
    return { headers, body: undefined }
  }
  // No payload for 204/304 (a 304 must not claim a zero-length representation).
  if (status === 204 || status === 304) return { headers, body: undefined }
  // An empty body the shard gave no type stays untyped (not labelled octet-stream).
  if (result.body.length === 0 && result.contentType === undefined) {
    headers['content-length'] = '0'
    return { headers, body: undefined }
  }
  if (result.contentType === undefined) headers['content-type'] = OCTET_STREAM
  headers['content-length'] = String(result.body.length)
  return { headers, body: result.body }
}

export function registerKvRoutes (app: FastifyInstance, options: KvRoutesOptions): void {
  const { forwarder, maxValueBytes, isDraining } = options

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const method = request.method as KvMethod
    let body: Buffer | null = null
    if (method === 'PUT') {
      // No body at all (no Content-Length, no Transfer-Encoding) skips the parser: an empty value.
      body = Buffer.isBuffer(request.body) ? request.body : EMPTY
    }
    const result = await forwardKv(forwarder, method, request.raw.url ?? '', request.headers, body, maxValueBytes, request.principal)
    const answer = answerOf(result, method, isDraining())
    reply.code(result.status).headers(answer.headers)
    return reply.send(answer.body)
  }

  // One route per method, so each carries its own schema (the description's operations).
  for (const method of ['GET', 'HEAD', 'PUT', 'DELETE'] as const) {
    app.route({
      method,
      url: `${KV_PREFIX}*`,
      exposeHeadRoute: false,
      bodyLimit: Math.max(1, maxValueBytes),
      ...documented(KV_SCHEMAS[method]),
      handler: handle
    })
  }
}

function valueTooLarge (maxValueBytes: number): ShardKvError {
  return new ShardKvError('value_too_large', `the value is larger than ${maxValueBytes} bytes`)
}
