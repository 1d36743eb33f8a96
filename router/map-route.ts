import type { FastifyInstance } from 'fastify'
import { queryInteger } from '../src/http/query-integer'
import { CLUSTER_MAP_PATH, MAP_FOLLOW_MAX_WAIT_MS } from '../src/protocol/wire'
import { CLUSTER_MAP_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'
import type { MapFollower } from './map-follower'

/**
 * `GET /cluster/map?after=&wait=`: the map this router routes by, as a long poll, so that a
 * direct client learns a change (a rebalance settling, a failover) the moment its router
 * does instead of polling /cluster, which the coordinator answers. Open polls are answered
 * (204) as the router begins to close, so they never hold its shutdown.
 */
export function registerMapRoute (app: FastifyInstance, follower: Pick<MapFollower, 'newer' | 'release'>): void {
  app.get(CLUSTER_MAP_PATH, documented(CLUSTER_MAP_SCHEMA), async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const after = queryInteger(q.after, 'after', -1)
    const wait = Math.max(0, queryInteger(q.wait, 'wait', 0, MAP_FOLLOW_MAX_WAIT_MS))
    const table = await follower.newer(after, wait)
    if (table === undefined || table.epoch === 0) return await reply.code(204).send()
    return await reply.header('cache-control', 'no-store').send(table.map)
  })
  app.addHook('preClose', (done) => {
    follower.release()
    done()
  })
}
