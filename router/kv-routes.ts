import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ShardKvError } from '../src/protocol/errors'
import { keyFromUrl } from '../src/protocol/key'
import { parseEtagList } from '../src/protocol/preconditions'
import { DEFAULT_CONTENT_TYPE, HEADER, KV_PREFIX, REQUEST_ID_PATTERN } from '../src/protocol/wire'
import type { Forwarder, ForwardRequest, KvMethod } from './forward'

/**
 * The data API as the router serves it: check what can be checked without the
 * data (key, precondition headers, value size), then forward to the owner and
 * relay its answer. Checking here keeps bad input from costing a shard round trip
 * and makes the router's 4xx answers the same whichever shard would have owned the key.
 */

export interface KvRoutesOptions {
  forwarder: Forwarder
  maxValueBytes: number
  /** True once the router drains: answers then close their connection. */
  isDraining: () => boolean
}

const EMPTY = Buffer.alloc(0)

export function registerKvRoutes (app: FastifyInstance, options: KvRoutesOptions): void {
  const { forwarder, maxValueBytes, isDraining } = options

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    // The raw URL, not fastify's decoded params: router, shard and client must agree
    // byte for byte on what the key is (see src/protocol/key.ts).
    const key = keyFromUrl(request.raw.url ?? '')
    const h = request.headers
    const ifMatch = h['if-match']
    const ifNoneMatch = h['if-none-match']
    if (ifMatch !== undefined) parseEtagList(ifMatch, 'If-Match')
    if (ifNoneMatch !== undefined) parseEtagList(ifNoneMatch, 'If-None-Match')

    const method = request.method as KvMethod
    let body: Buffer | null = null
    let contentType: string | undefined
    if (method === 'PUT') {
      // No body at all (no Content-Length, no Transfer-Encoding) skips the parser: an empty value.
      body = Buffer.isBuffer(request.body) ? request.body : EMPTY
      // fastify's parser enforces the limit (before reading, from Content-Length, and
      // while reading); this covers a limit of 0, which fastify cannot express.
      if (body.length > maxValueBytes) throw valueTooLarge(maxValueBytes)
      contentType = h['content-type'] ?? DEFAULT_CONTENT_TYPE
    }

    // A client that retries a write sends the same request id again, so the shard applies it once.
    const clientId = h[HEADER.requestId]
    const requestId = typeof clientId === 'string' && REQUEST_ID_PATTERN.test(clientId) ? clientId : randomUUID()
    const forward: ForwardRequest = { method, key, requestId, body, contentType, ifMatch, ifNoneMatch }
    const result = await forwarder.forward(forward)

    reply.code(result.status)
    if (result.contentType !== undefined) reply.header('content-type', result.contentType)
    if (result.etag !== undefined) reply.header('etag', result.etag)
    if (result.node !== undefined) reply.header(HEADER.node, result.node)
    if (result.retries > 0) reply.header(HEADER.retries, String(result.retries))
    if (isDraining()) reply.header('connection', 'close')
    if (method === 'HEAD') {
      // fastify keeps a Content-Length set on a HEAD reply: the size of what GET would send.
      if (result.contentLength !== undefined) reply.header('content-length', result.contentLength)
      return reply.send()
    }
    // No payload for 204/304 (a 304 must not claim a zero-length representation) or for
    // an empty body the shard gave no type (fastify would label it octet-stream).
    if (result.status === 204 || result.status === 304 || (result.body.length === 0 && result.contentType === undefined)) {
      return reply.send()
    }
    return reply.send(result.body)
  }

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'DELETE'],
    url: `${KV_PREFIX}*`,
    exposeHeadRoute: false,
    bodyLimit: Math.max(1, maxValueBytes),
    handler: handle
  })
}

function valueTooLarge (maxValueBytes: number): ShardKvError {
  return new ShardKvError('value_too_large', `the value is larger than ${maxValueBytes} bytes`)
}
