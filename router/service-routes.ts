import type { FastifyInstance } from 'fastify'
import { HEALTH_PATH, METRICS_PATH, READY_PATH } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { HEALTH_SCHEMA, METRICS_SCHEMA, READY_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'
import type { RouterMetrics } from './metrics'

/**
 * The router's own `GET /healthz` (the process answers: liveness), `GET /readyz` (it holds
 * a map to route by: readiness, for a load balancer or Kubernetes) and `GET /metrics`
 * (the cluster view is the coordinator's, relayed).
 */
export function registerServiceRoutes (app: FastifyInstance, metrics: RouterMetrics, epoch: () => number): void {
  app.get(HEALTH_PATH, documented(HEALTH_SCHEMA), (_request, reply) => {
    void reply.send({ status: 'ok', role: 'router', epoch: epoch() })
  })

  app.get(READY_PATH, documented(READY_SCHEMA), async (_request, reply) => {
    if (epoch() === 0) throw new ShardKvError('unavailable', 'no cluster map yet: the coordinator (or etcd) has not answered this router')
    return await reply.send({ ready: true, epoch: epoch() })
  })

  app.get(METRICS_PATH, documented(METRICS_SCHEMA), async (_request, reply) => {
    const { contentType, body } = await metrics.render()
    return reply.type(contentType).send(body)
  })
}
