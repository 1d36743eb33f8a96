import type { FastifyInstance } from 'fastify'
import { CLUSTER_PATH, HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'
import type { Coordinator } from './coordinator'
import type { CoordinatorMetrics } from './metrics'
import type { RebalanceProgress } from '../src/membership/rebalance'
import type { ClusterView } from '../src/protocol/cluster-view'
import { CLUSTER_SCHEMA, HEALTH_SCHEMA, METRICS_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'
import type { PeerHealth } from '../src/membership/map'

/** `GET /healthz`, `GET /metrics` and `GET /cluster` (the admin calls that change things are in admin-api.ts). */
export function registerAdminRoutes (app: FastifyInstance, coordinator: Coordinator, metrics: CoordinatorMetrics, rebalance: () => RebalanceProgress | null, leading: () => boolean, peer: () => PeerHealth): void {
  app.get(HEALTH_PATH, documented(HEALTH_SCHEMA), (_request, reply) => {
    void reply.send({ status: 'ok', role: 'coordinator', epoch: coordinator.epoch, leader: leading(), ...peer() })
  })

  app.get(METRICS_PATH, documented(METRICS_SCHEMA), async (_request, reply) => {
    const { contentType, body } = await metrics.render()
    return reply.type(contentType).send(body)
  })

  app.get(CLUSTER_PATH, documented(CLUSTER_SCHEMA), (_request, reply) => {
    const view: ClusterView = { ...coordinator.view(), ...(coordinator.map().handover !== undefined ? { handover: coordinator.map().handover } : {}), rebalance: rebalance() }
    void reply.send(view)
  })
}
