import type { FastifyInstance } from 'fastify'
import { HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'
import { HEALTH_SCHEMA, METRICS_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'
import type { RouterMetrics } from './metrics'

/** The router's own `GET /healthz` and `GET /metrics` (the cluster view is the coordinator's, relayed). */
export function registerServiceRoutes (app: FastifyInstance, metrics: RouterMetrics, epoch: () => number): void {
  app.get(HEALTH_PATH, documented(HEALTH_SCHEMA), (_request, reply) => {
    void reply.send({ status: 'ok', role: 'router', epoch: epoch() })
  })

  app.get(METRICS_PATH, documented(METRICS_SCHEMA), async (_request, reply) => {
    const { contentType, body } = await metrics.render()
    return reply.type(contentType).send(body)
  })
}
