import type { FastifyInstance } from 'fastify'
import { validateMap, type ClusterMap } from '../src/membership/map'
import type { InstalledMapRecord } from '../src/storage/migration-store'
import { ShardKvError } from '../src/protocol/errors'
import { READY_PATH } from '../src/protocol/wire'

/**
 * `GET /readyz` of a shard node: 200 only while the node is worth sending traffic to and
 * keeping out of a disruption — the primary of its group, or a replica in the group's in-sync
 * set — by the map installed on the node; 503 otherwise (no map yet, not in its group's map, or a
 * replica still catching up). Orchestrators probe it for readiness (deploy/kubernetes/).
 * A not-ready node answers 503 `unavailable` (the catalogue's error body) with the reason. A pod
 * whose replica is resyncing is not ready, so a PodDisruptionBudget of one keeps its in-sync
 * peer from being evicted meanwhile. Liveness stays /healthz (the process answers).
 * Open like /healthz: it says only what the map says of this node.
 */
export interface Readiness { ready: boolean, role?: 'primary' | 'replica', reason: string }

/** Pure: readiness from the installed map record (undefined: none installed yet). */
export function readiness (record: { group: string, self?: string, map: ClusterMap } | undefined): Readiness {
  if (record === undefined) return { ready: false, reason: 'no cluster map installed yet' }
  if (record.self === undefined) return { ready: false, reason: 'the installed map does not say which node this is' }
  const group = record.map.groups.find((g) => g.id === record.group)
  const me = group?.nodes.find((n) => n.url === record.self)
  if (group === undefined || me === undefined) return { ready: false, reason: `${record.self} is not a node of group ${record.group} in the installed map` }
  if (me.role === 'primary') return { ready: true, role: 'primary', reason: `primary of ${group.id}` }
  if (me.inSync === true) return { ready: true, role: 'replica', reason: `in-sync replica of ${group.id}` }
  return { ready: false, role: 'replica', reason: `replica of ${group.id}, not in the in-sync set (catching up)` }
}

export function registerReadyz (app: FastifyInstance, installed: () => InstalledMapRecord | undefined): void {
  app.get(READY_PATH, async (_request, reply) => {
    const record = installed()
    const answer = readiness(record === undefined ? undefined : { group: record.group, ...(record.self !== undefined ? { self: record.self } : {}), map: validateMap(record.map) })
    if (!answer.ready) throw new ShardKvError('unavailable', answer.reason, answer.role !== undefined ? { role: answer.role } : undefined)
    return await reply.send(answer)
  })
}
