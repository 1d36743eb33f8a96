import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { parseBatch, type BatchLimits } from '../src/protocol/batch'
import { jsonBytes } from '../src/http/json-body'
import { resultsBody } from '../src/protocol/batch-lines'
import { ShardKvError } from '../src/protocol/errors'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import { BATCH_ID_ROOM, newRequestId, requireRequestId } from '../src/protocol/request-id'
import { authorizeOps, principalName } from '../src/auth/client-guard'
import type { BatchForwarder } from './batch-forward'
import type { RouterMetrics } from './metrics'
import { BATCH_REFUSED_SCHEMA, BATCH_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'

/**
 * POST /batch on the router: validate the whole batch (nothing is forwarded when any op
 * is malformed), give it one request id, run it, answer every op's result in the
 * client's order. Always 200 once valid: per-op failures are per-op results.
 *
 * The body is JSON but arrives through the shared raw-bytes parser (src/http/server.ts)
 * with this route's own limit, so the value-size limit of /kv does not apply and a body
 * over --max-batch-bytes is `batch_too_large` rather than `value_too_large`.
 */

export interface BatchRoutesOptions {
  batches: BatchForwarder
  metrics: RouterMetrics
  limits: BatchLimits
  maxBatchBytes: number
  isDraining: () => boolean
}

export function registerBatchRoutes (app: FastifyInstance, options: BatchRoutesOptions): void {
  const { batches, metrics, limits, maxBatchBytes, isDraining } = options

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const ops = parseBatch(jsonBytes(request), limits)
    authorizeOps(request.principal, ops)
    metrics.countBatch(ops)
    // A client that retries a batch sends its id again, so every write in it applies once.
    const clientId = request.headers[HEADER.requestId]
    const batchId = clientId === undefined ? newRequestId() : requireRequestId(clientId, BATCH_ID_ROOM).id
    const { results, retries } = await batches.run(ops, batchId, principalName(request.principal))
    if (retries > 0) reply.header(HEADER.retries, String(retries))
    if (isDraining()) reply.header('connection', 'close')
    return reply.code(200).type('application/json').send(resultsBody(results))
  }

  app.route({
    method: 'POST',
    url: BATCH_PATH,
    bodyLimit: maxBatchBytes,
    ...documented(BATCH_SCHEMA),
    handler: handle,
    errorHandler: (err: FastifyError | ShardKvError, _request, reply) => {
      // The server-wide handler calls any oversized body a value_too_large; here it is the batch.
      if (!(err instanceof ShardKvError) && err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        throw new ShardKvError('batch_too_large', `a batch body is at most ${maxBatchBytes} bytes`, { maxBytes: maxBatchBytes })
      }
      // Everything else is answered like any other route's error.
      throw err
    }
  })
  app.route({
    method: ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH'],
    url: BATCH_PATH,
    exposeHeadRoute: false,
    ...documented(BATCH_REFUSED_SCHEMA),
    handler: async (request, reply) => {
      reply.header('allow', 'POST')
      throw new ShardKvError('method_not_allowed', `${request.method} is not allowed on ${BATCH_PATH}; use POST`)
    }
  })
}

