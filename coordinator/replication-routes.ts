import { parseInSyncChange } from '../src/protocol/in-sync'
import type { FastifyInstance } from 'fastify'
import { ADMIN, INTERNAL_REPLICATION } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { normalizeNodeUrl, primaryOf, type ClusterMap } from '../src/membership/map'
import { judgeInSyncAsker } from '../src/auth/senders'
import { addReplica, removeReplica, setInSync } from '../src/replication/map-changes'
import type { NodeClient } from '../src/peer/node-client'
import { jsonBody } from '../src/http/json-body'
import { ADD_REPLICA_SCHEMA, REMOVE_REPLICA_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'

/**
 * The coordinator's replication endpoints: primaries asking to change their group's
 * in-sync set (answered only after the new map is installed everywhere), and the
 * admin calls that add or remove a replica.
 */

export interface ReplicationRoutesContext {
  transition: (reason: string, compute: (current: ClusterMap) => ClusterMap) => Promise<ClusterMap>
  nodes: NodeClient
}

/**
 * Primaries' in-sync asks: an internal endpoint, registered where the router serves
 * peers (its peer listener, or a secret-guarded scope of the client listener). With
 * `senderChecks` (a cluster secret is configured) only the group's primary in the
 * current map may ask (403 otherwise); without a secret a claim would prove nothing.
 */
export function registerInSyncRoute (app: FastifyInstance, ctx: Pick<ReplicationRoutesContext, 'transition'> & { senderChecks: boolean }): void {
  app.post(INTERNAL_REPLICATION.inSync, async (request, reply) => {
    const { group, url, inSync, term, sender } = parseInSyncChange(jsonBody(request))
    const map = await ctx.transition(`${group}: ${url} ${inSync ? 'joins' : 'leaves'} the in-sync set`, (current) => {
      // Judged against the map the change applies to (transitions are serialized).
      const verdict = ctx.senderChecks ? judgeInSyncAsker(sender, primaryOf(current, group)?.url) : { ok: true as const }
      if (!verdict.ok) throw new ShardKvError('forbidden', verdict.reason)
      return setInSync(current, group, url, inSync, term)
    })
    return await reply.send({ epoch: map.epoch })
  })
}

/** The admin calls that add or remove a replica (client listener). */
export function registerReplicationRoutes (app: FastifyInstance, ctx: ReplicationRoutesContext): void {
  app.post(`${ADMIN.groups}/:id/replicas`, documented(ADD_REPLICA_SCHEMA), async (request, reply) => {
    const { id } = request.params as { id: string }
    const body = jsonBody(request)
    if (typeof body.url !== 'string') throw new ShardKvError('invalid_request', 'url (the replica node) is required')
    const url = normalizeNodeUrl(body.url)
    await ctx.nodes.probe(url)
    const map = await ctx.transition(`${id}: add replica ${url}`, (current) => addReplica(current, id, url))
    return await reply.code(201).send({ epoch: map.epoch, group: map.groups.find((g) => g.id === id) })
  })

  app.delete(`${ADMIN.groups}/:id/replicas`, documented(REMOVE_REPLICA_SCHEMA), async (request, reply) => {
    const { id } = request.params as { id: string }
    const { url } = request.query as { url?: string }
    if (typeof url !== 'string') throw new ShardKvError('invalid_request', 'the url query parameter names the replica')
    const map = await ctx.transition(`${id}: remove replica ${url}`, (current) => removeReplica(current, id, url))
    return await reply.send({ epoch: map.epoch, group: map.groups.find((g) => g.id === id) })
  })
}
