import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { errorBody } from '../src/protocol/errors'
import { KV_PREFIX } from '../src/protocol/wire'

/**
 * Refuses an oversized value before the client sends it. Node answers
 * `Expect: 100-continue` with "100 Continue" by itself, after which the client
 * uploads the whole body only to be told 413; with this listener a PUT whose
 * Content-Length is over the limit gets its 413 instead of the go-ahead.
 * (Without Expect, fastify's body parser still refuses from Content-Length before
 * reading, and closes the connection.)
 */
export function refuseOversizedUploads (server: Server, maxValueBytes: number): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length'])
    if (length > maxValueBytes && req.url?.startsWith(KV_PREFIX) === true) {
      const body = errorBody('value_too_large', `the value is ${length} bytes; at most ${maxValueBytes} are allowed`)
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' })
      res.end(body)
      return
    }
    res.writeContinue()
    server.emit('request', req, res)
  })
}
