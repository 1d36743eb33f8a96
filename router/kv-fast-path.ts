import type { IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Logger } from '../src/log'
import { ShardKvError, errorBody } from '../src/protocol/errors'
import { KV_PREFIX } from '../src/protocol/wire'
import type { KvForward, KvMethod } from './forward'
import { answerOf, forwardKv } from './kv-routes'
import type { RouterMetrics } from './metrics'
import type { ClientGuard } from '../src/auth/client-guard'

/**
 * The data plane's bodiless requests (GET, HEAD, and DELETE without a body), served
 * straight from Node's request event, ahead of fastify. They are most of a router's
 * traffic, and for them fastify's request/reply objects, hooks and routing were a
 * quarter of the router's own CPU per request. Everything else — PUT (body parsing
 * and its limits), other methods (405 with Allow), other paths — is left to fastify,
 * so this path has no body handling and no edge cases of its own: it validates and
 * answers through the same `forwardKv`/`answerOf` as the fastify route.
 */

export interface KvFastPathOptions {
  forwarder: KvForward
  maxValueBytes: number
  metrics: RouterMetrics
  log: Logger
  isDraining: () => boolean
  /** Client authentication and rate limits; undefined when neither is configured (no cost). */
  guard?: ClientGuard
}

const JSON_TYPE = 'application/json; charset=utf-8'

/** Returns a request listener that answers what it takes and returns false for the rest. */
export function kvFastPath (options: KvFastPathOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { forwarder, maxValueBytes, metrics, log, isDraining } = options
  const guard = options.guard?.active === true ? options.guard : undefined

  const serve = async (req: IncomingMessage, res: ServerResponse, method: KvMethod, url: string, start: number): Promise<void> => {
    let status: number
    try {
      // The same check as fastify's onRequest hook (client-guard.ts): one header, one hash, one Map lookup.
      const principal = guard === undefined ? null : guard.authenticate(req.headers, req.socket.remoteAddress)
      const result = await forwardKv(forwarder, method, url, req.headers, null, maxValueBytes, principal)
      const answer = answerOf(result, method, isDraining())
      res.writeHead(result.status, answer.headers)
      res.end(answer.body)
      status = result.status
    } catch (err) {
      try {
        status = sendError(res, err, url, method)
      } catch (fatal) {
        // Never an unhandled rejection: this promise has no one awaiting it.
        log.error({ err: fatal, event: 'request-failed', url, method }, 'could not answer a request')
        res.destroy()
        status = 500
      }
    }
    metrics.observeRequest(method, status, performance.now() - start)
  }

  const sendError = (res: ServerResponse, err: unknown, url: string, method: string): number => {
    if (res.headersSent) {
      // Too late for an error answer: the client sees a cut connection, not a wrong value.
      res.destroy()
      return 500
    }
    let status = 500
    let body: string
    if (err instanceof ShardKvError) {
      status = err.status
      body = JSON.stringify(err.toBody())
    } else {
      log.error({ err, event: 'request-failed', url, method }, 'request failed')
      body = errorBody('internal', 'internal error')
    }
    const headers: Record<string, string | number> = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) }
    if (err instanceof ShardKvError && err.headers !== undefined) Object.assign(headers, err.headers)
    if (isDraining()) headers.connection = 'close'
    res.writeHead(status, headers)
    res.end(body)
    return status
  }

  return (req, res) => {
    const url = req.url
    if (url === undefined || !url.startsWith(KV_PREFIX)) return false
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') {
      // fastify parses any DELETE body it is sent (and refuses a bad Content-Type with 415).
      if (method !== 'DELETE') return false
      const h = req.headers
      const length = h['content-length']
      if (h['content-type'] !== undefined || h['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) return false
    }
    void serve(req, res, method as KvMethod, url, performance.now())
    return true
  }
}
