import { ShardKvError } from '../protocol/errors'
import { termOf, normalizeNodeUrl, type ClusterMap, type GroupInfo } from '../membership/map'

/**
 * Replication's changes to the cluster map, as pure functions. Each returns a new map
 * with the next epoch, or throws ReplicationMapError, whose catalogue code is the API's 4xx answer.
 */

export class ReplicationMapError extends ShardKvError {
  declare readonly code: 'no_such_group' | 'stale_term' | 'invalid_request' | 'conflict'
  constructor (code: ReplicationMapError['code'], message: string) {
    super(code, message)
    this.name = 'ReplicationMapError'
  }
}

function withGroup (map: ClusterMap, groupId: string, edit: (g: GroupInfo) => GroupInfo): ClusterMap {
  const group = map.groups.find((g) => g.id === groupId)
  if (group === undefined) throw new ReplicationMapError('no_such_group', `group ${groupId} does not exist`)
  return { ...map, epoch: map.epoch + 1, groups: map.groups.map((g) => g.id === groupId ? edit(g) : g) }
}

/**
 * Promotes `url` to primary under a new term. The old primary stays listed as an
 * out-of-sync replica: when it returns it resyncs from the new primary. The other
 * replicas are out of sync too: their data came from the old term and they resync.
 */
export function promote (map: ClusterMap, groupId: string, url: string): ClusterMap {
  return withGroup(map, groupId, (g) => {
    const chosen = g.nodes.find((n) => n.url === url)
    if (chosen === undefined || chosen.role !== 'replica') throw new ReplicationMapError('invalid_request', `${url} is not a replica of ${groupId}`)
    return {
      ...g,
      term: termOf(g) + 1,
      nodes: [
        { url, role: 'primary' },
        ...g.nodes.filter((n) => n.url !== url).map((n) => ({ url: n.url, role: 'replica' as const, inSync: false }))
      ]
    }
  })
}

/** Marks a replica in or out of the in-sync set, on behalf of the primary of `term`. */
export function setInSync (map: ClusterMap, groupId: string, url: string, inSync: boolean, term: number): ClusterMap {
  const group = map.groups.find((g) => g.id === groupId)
  if (group === undefined) throw new ReplicationMapError('no_such_group', `group ${groupId} does not exist`)
  if (termOf(group) !== term) throw new ReplicationMapError('stale_term', `group ${groupId} is at term ${termOf(group)}, not ${term}`)
  const node = group.nodes.find((n) => n.url === url)
  if (node === undefined || node.role !== 'replica') throw new ReplicationMapError('invalid_request', `${url} is not a replica of ${groupId}`)
  if (node.inSync === inSync) return map
  return withGroup(map, groupId, (g) => ({ ...g, nodes: g.nodes.map((n) => n.url === url ? { ...n, inSync } : n) }))
}

export function addReplica (map: ClusterMap, groupId: string, rawUrl: string): ClusterMap {
  const url = normalizeNodeUrl(rawUrl)
  if (map.groups.some((g) => g.nodes.some((n) => n.url === url))) throw new ReplicationMapError('conflict', `node ${url} already serves a group`)
  return withGroup(map, groupId, (g) => ({ ...g, nodes: [...g.nodes, { url, role: 'replica', inSync: false }] }))
}

export function removeReplica (map: ClusterMap, groupId: string, rawUrl: string): ClusterMap {
  const url = normalizeNodeUrl(rawUrl)
  return withGroup(map, groupId, (g) => {
    const node = g.nodes.find((n) => n.url === url)
    if (node === undefined) throw new ReplicationMapError('invalid_request', `${url} is not a node of ${groupId}`)
    if (node.role === 'primary') throw new ReplicationMapError('conflict', `${url} is the primary of ${groupId}; only replicas can be removed`)
    return { ...g, nodes: g.nodes.filter((n) => n.url !== url) }
  })
}
