import type { WireNodeRegistration } from '../protocol/wire'

/**
 * Which registered nodes make a new group (`POST /admin/groups` naming only the id, with
 * the etcd registry): every live node registered for that group id; the primary is the
 * one that started first (ties by node id, so every coordinator picks the same one); the
 * rest become its replicas. A pure decision.
 */
export type RegisteredGroup =
  | { ok: true, url: string, replicas: string[] }
  | { ok: false, why: string }

export function registeredGroup (entries: readonly WireNodeRegistration[], group: string): RegisteredGroup {
  const nodes = entries.filter((e) => e.group === group)
    .sort((a, b) => a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0)
  if (nodes.length === 0) return { ok: false, why: `no node is registered for group ${group}: start its nodes with --group ${group} and the cluster's --registry, or name the url` }
  const [first, ...rest] = nodes as [WireNodeRegistration, ...WireNodeRegistration[]]
  return { ok: true, url: first.url, replicas: rest.map((n) => n.url) }
}
