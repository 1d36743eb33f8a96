import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { readFileSync } from 'node:fs'
import type { TlsOptions } from 'node:tls'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ShardKvError, errorBody, type ErrorCode } from '../protocol/errors'
import { KV_PREFIX } from '../protocol/wire'

/**
 * The fastify instance both the router and shard nodes serve the data API with.
 * It fixes the parts of HTTP handling that must behave the same on both sides:
 * values are raw bytes of any content type, every error is the JSON body of
 * src/protocol/errors.ts, and malformed input (bad URLs, oversized headers,
 * lying Content-Length) is answered with a 4xx instead of reaching a handler.
 */

/**
 * What one process's listener allows a client (every port is reachable by strangers):
 * a slow client is cut, idle connections are closed, and their number is capped.
 */
export interface ListenerLimits {
  headersTimeoutMs: number
  requestTimeoutMs: number
  idleTimeoutMs: number
  maxConnections: number
}

/** PEM certificate and key of an HTTPS client listener (`--tls-cert`, `--tls-key`). */
export interface ListenerTls {
  cert: Buffer
  key: Buffer
}

export interface ApiServerOptions {
  log: Logger
  maxValueBytes: number
  limits: ListenerLimits
  /** Serve HTTPS with these options: a client listener's certificate (loadListenerTls) or a peer listener's mutual TLS (src/auth/tls.ts). */
  tls?: TlsOptions
}

/** Reads `--tls-cert`/`--tls-key` (both or neither); undefined when neither is set. Throws naming the file. */
export function loadListenerTls (certPath: string, keyPath: string): ListenerTls | undefined {
  if (certPath === '' && keyPath === '') return undefined
  if (certPath === '' || keyPath === '') throw new Error('--tls-cert and --tls-key go together')
  const read = (path: string): Buffer => {
    try {
      return readFileSync(path)
    } catch (err) {
      throw new Error(`cannot read ${path}: ${(err as Error).message}`)
    }
  }
  return { cert: read(certPath), key: read(keyPath) }
}

/**
 * Node checks its header and request timeouts every `connectionsCheckingInterval`
 * (30 s by default), which would let a drip-feeding client hold a connection long past
 * them: check every second.
 */
const TIMEOUT_CHECK_MS = 1000

function limitedServer (limits: ListenerLimits, tls: TlsOptions | undefined, handler: (req: IncomingMessage, res: ServerResponse) => void): ReturnType<typeof createServer> {
  const http = {
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_MS
  }
  // An https.Server is an http.Server over TLS sockets: the same limits and handlers apply.
  const server = tls === undefined
    ? createServer(http, handler)
    // A TLS handshake is part of sending the request's head: bounded by the same timeout.
    : createHttpsServer({ ...http, ...tls, handshakeTimeout: http.headersTimeout }, handler) as unknown as ReturnType<typeof createServer>
  // Counted here rather than with server.maxConnections, which a cluster worker's
  // round-robin handle does not honour: shard workers get their sockets from the supervisor.
  let open = 0
  server.on('connection', (socket: Socket) => {
    if (open >= limits.maxConnections) {
      socket.destroy()
      return
    }
    open++
    socket.once('close', () => { open-- })
  })
  return server
}

export const KV_METHODS = 'GET, HEAD, PUT, DELETE'

/** The one place a fastify reply turns into an error answer: status and body from the catalogue. */
function sendError (reply: FastifyReply, err: ShardKvError): FastifyReply {
  if (err.headers !== undefined) reply.headers(err.headers)
  return reply.code(err.status).type('application/json').send(JSON.stringify(err.toBody()))
}

/** Maps fastify's own coded errors (body parsing, limits) to catalogue errors. */
function fromFastifyError (err: FastifyError, url: string): ShardKvError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      // Also internal bodies past their cap (src/protocol/limits.ts): the same code, truer words.
      return new ShardKvError('value_too_large', url.startsWith(KV_PREFIX) ? 'the value is larger than the configured limit' : 'the request body is larger than the limit of this endpoint')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ShardKvError('invalid_request', 'the request body does not match its Content-Length')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new ShardKvError('unsupported', err.message)
  }
  const status = err.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    return new ShardKvError(status === 413 ? 'value_too_large' : 'invalid_request', err.message)
  }
  return undefined
}

const CLIENT_ERROR_RESPONSES: Record<string, { status: string, code: ErrorCode, message: string }> = {
  HPE_HEADER_OVERFLOW: { status: '431 Request Header Fields Too Large', code: 'headers_too_large', message: 'the request headers are too large' },
  HPE_URI_TOO_LONG: { status: '414 URI Too Long', code: 'invalid_request', message: 'the request URI is too long' },
  ERR_HTTP_REQUEST_TIMEOUT: { status: '408 Request Timeout', code: 'request_timeout', message: 'the request was not received in time' }
}

/** Answers requests Node's HTTP parser rejects, which never reach fastify. */
function onClientError (err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const known = (err.code !== undefined ? CLIENT_ERROR_RESPONSES[err.code] : undefined) ??
    { status: '400 Bad Request', code: 'invalid_request' as ErrorCode, message: 'the request could not be parsed as HTTP/1.1' }
  const body = errorBody(known.code, known.message)
  socket.end(`HTTP/1.1 ${known.status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

export function createApiServer (options: ApiServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.log,
    // One line per notable event, not per request: the hot path stays allocation-light.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.maxValueBytes,
    serverFactory: (handler) => limitedServer(options.limits, options.tls, handler),
    // Requests that arrive on a kept-alive connection while we drain are still served
    // (with Connection: close); a 503 there would be a failed client request.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    clientErrorHandler: onClientError,
    frameworkErrors: (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const isKey = request.raw.url?.startsWith(KV_PREFIX) === true
      if (err.code === 'FST_ERR_BAD_URL') {
        return sendError(reply, new ShardKvError(isKey ? 'invalid_key' : 'invalid_request', isKey ? 'the key is not valid percent-encoded UTF-8' : 'the URL is malformed'))
      }
      return sendError(reply, new ShardKvError('invalid_request', err.message))
    }
  })

  // Values are opaque bytes: no JSON or text parsing, whatever the Content-Type.
  app.removeAllContentTypeParsers()
  // The limit is the server's (or a route's own, for internal batch routes).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => {
    done(null, body)
  })

  app.setErrorHandler((err: FastifyError | ShardKvError, request, reply) => {
    // Domain errors (MapError, RebalanceError, ...) are ShardKvErrors carrying their code.
    if (err instanceof ShardKvError) return sendError(reply, err)
    const mapped = fromFastifyError(err, request.raw.url ?? '')
    if (mapped !== undefined) return sendError(reply, mapped)
    request.log.error({ err, event: 'request-failed', url: request.raw.url, method: request.method }, 'request failed')
    return sendError(reply, new ShardKvError('internal', 'internal error'))
  })

  app.setNotFoundHandler((request, reply) => {
    if (request.raw.url?.startsWith(KV_PREFIX) === true) {
      return sendError(reply.header('allow', KV_METHODS), methodNotAllowed(request.method))
    }
    return sendError(reply, new ShardKvError('no_route', `no route for ${request.method} ${request.raw.url ?? ''}`))
  })

  return app as unknown as FastifyInstance
}

/** Registers 405 answers for the methods fastify routes but the data API does not use. */
export function refuseOtherKvMethods (app: FastifyInstance): void {
  app.route({
    method: ['POST', 'PATCH', 'OPTIONS'],
    url: `${KV_PREFIX}*`,
    handler: (request, reply) => {
      reply.header('allow', KV_METHODS)
      throw methodNotAllowed(request.method)
    }
  })
}

function methodNotAllowed (method: string): ShardKvError {
  return new ShardKvError('method_not_allowed', `${method} is not allowed on a key; use ${KV_METHODS}`)
}
