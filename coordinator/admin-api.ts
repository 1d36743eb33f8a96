import type { FastifyInstance } from 'fastify'
import { jsonBody } from '../src/http/json-body'
import { ADMIN } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { planAdd, planRemove } from '../src/membership/rebalance'
import { normalizeNodeUrl, type ClusterMap } from '../src/membership/map'
import type { Rebalancer } from './rebalancer'
import type { NodeClient } from '../src/peer/node-client'
import type { WireNodeRegistration } from '../src/protocol/wire'
import { registeredGroup } from '../src/registry/registered-group'
import { ADD_GROUP_SCHEMA, REBALANCE_SCHEMA, REMOVE_GROUP_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'

/**
 * The coordinator's admin API: add a group, drain a group, watch the rebalance.
 * Requests are validated in full before anything changes; refusals are typed 4xx
 * (RebalanceError and MapError carry their catalogue code to the central handler).
 */

export interface AdminContext {
  currentMap: () => ClusterMap
  rebalancer: Rebalancer
  nodes: NodeClient
  /** A planned switchover is under way: a rebalance waits for it. */
  switchingOver: () => boolean
  /** The nodes registered in etcd (absent with the file registry): an add may name only the group's id. */
  registeredNodes?: () => Promise<WireNodeRegistration[]>
}

function refuseWhileBusy (ctx: AdminContext): void {
  if (ctx.rebalancer.isRunning()) throw new ShardKvError('rebalance_running', 'a rebalance is still running; wait for it to finish')
  if (ctx.switchingOver()) throw new ShardKvError('conflict', 'a switchover is running; wait for it to finish')
}

export function registerAdminApi (app: FastifyInstance, ctx: AdminContext): void {
  app.post(ADMIN.groups, documented(ADD_GROUP_SCHEMA), async (request, reply) => {
    const body = jsonBody(request)
    const id = body.id
    const weight = body.weight ?? 1
    if (typeof id !== 'string') throw new ShardKvError('invalid_request', 'id (a string) is required')
    if (typeof weight !== 'number') throw new ShardKvError('invalid_request', 'weight must be a number')
    refuseWhileBusy(ctx)
    const { url, replicas } = await groupNodes(ctx, id, body.url, body.replicas)
    const plan = planAdd(ctx.currentMap(), { id, url, weight, replicas })
    // The new node must answer, and must not hold keys: a node that still has rows
    // from an earlier life would serve them as current once it owns their keys.
    for (const node of [plan.spec?.url ?? url, ...(plan.spec?.replicas ?? [])]) {
      await ctx.nodes.probe(node)
      const stats = await ctx.nodes.stats(node)
      if (stats.keys > 0) throw new ShardKvError('conflict', `the node ${node} already holds ${stats.keys} keys; start the new group on empty data dirs`)
    }
    return await reply.code(202).send({ rebalance: await ctx.rebalancer.begin(plan) })
  })

  app.delete(`${ADMIN.groups}/:id`, documented(REMOVE_GROUP_SCHEMA), async (request, reply) => {
    const { id } = request.params as { id: string }
    refuseWhileBusy(ctx)
    const plan = planRemove(ctx.currentMap(), id)
    return await reply.code(202).send({ rebalance: await ctx.rebalancer.begin(plan) })
  })

  app.get(ADMIN.rebalance, documented(REBALANCE_SCHEMA), (_request, reply) => reply.send({ rebalance: ctx.rebalancer.progress() }))
}

/**
 * The new group's primary and replicas: as the request names them, or — naming no url, with
 * the etcd registry — the nodes registered for that group id (registeredGroup decides).
 */
async function groupNodes (ctx: AdminContext, id: string, url: unknown, replicas: unknown): Promise<{ url: string, replicas: string[] }> {
  if (url === undefined && replicas === undefined && ctx.registeredNodes !== undefined) {
    const entries = await ctx.registeredNodes().catch((err: Error) => {
      throw new ShardKvError('unavailable', `cannot read the registered nodes from etcd: ${err.message}`)
    })
    const found = registeredGroup(entries, id)
    if (!found.ok) throw new ShardKvError('invalid_request', found.why)
    return { url: found.url, replicas: found.replicas }
  }
  if (typeof url !== 'string') throw new ShardKvError('invalid_request', `url (the new group's primary node) is required${ctx.registeredNodes === undefined ? '' : ', or name none to use the nodes registered for the group'}`)
  const list = replicas ?? []
  if (!Array.isArray(list) || !list.every((r): r is string => typeof r === 'string')) throw new ShardKvError('invalid_request', 'replicas must be an array of node urls')
  return { url: normalizeNodeUrl(url), replicas: list }
}
