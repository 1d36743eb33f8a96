import { GroupRing } from '../../src/ring/ring'
import type { ClusterView, GroupView, NodeView } from '../../src/protocol/cluster-view'

/**
 * Pure readings of a GET /cluster view for tests: a group, its primary and replicas, a
 * node's entry, whether replicas are in sync, a one-line description for failure
 * messages, and the ring the view places keys by.
 */

export function groupOf (view: Pick<ClusterView, 'groups'>, id: string): GroupView {
  const g = view.groups.find((x) => x.id === id)
  if (g === undefined) throw new Error(`group ${id} is not in the map`)
  return g
}

export function primaryUrl (view: Pick<ClusterView, 'groups'>, id: string): string {
  const n = groupOf(view, id).nodes.find((x) => x.role === 'primary')
  if (n === undefined) throw new Error(`group ${id} has no primary`)
  return n.url
}

export function replicaUrls (view: Pick<ClusterView, 'groups'>, id: string): string[] {
  return groupOf(view, id).nodes.filter((x) => x.role === 'replica').map((x) => x.url)
}

export function nodeView (view: Pick<ClusterView, 'groups'>, url: string): NodeView | undefined {
  for (const g of view.groups) {
    const n = g.nodes.find((x) => x.url === url)
    if (n !== undefined) return n
  }
  return undefined
}

/** A replica that is in the in-sync set, answers health checks and has no lag. */
export function replicaCaughtUp (view: Pick<ClusterView, 'groups'>, url: string): boolean {
  const n = nodeView(view, url)
  return n !== undefined && n.role === 'replica' && n.inSync === true && n.health === 'up' && n.lag === 0
}

/** Every replica of every group is in the in-sync set and up. */
export function allReplicasInSync (view: Pick<ClusterView, 'groups'>): boolean {
  return view.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))
}

/** One line per group: term, then each node's role, health, inSync, position and lag. */
export function describeView (view: ClusterView): string {
  return `epoch ${view.epoch}; ` + view.groups.map((g) => `${g.id} term ${g.term}: ` + g.nodes.map((n) =>
    `${n.url} ${n.role}${n.role === 'replica' ? (n.inSync === true ? ' in-sync' : ' out-of-sync') : ''} ${n.health} pos=${String(n.position)} lag=${String(n.lag)}`).join(', ')).join(' | ') +
    (view.rebalance === undefined || view.rebalance === null ? '' : ` | rebalance ${view.rebalance.phase}`)
}

/** The ring that places keys under a published map (its active groups). */
export function ringOfView (view: Pick<ClusterView, 'groups' | 'ring'>): GroupRing {
  return new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
}

/** `n` keys named `${prefix}/<i>` that the ring of `view` gives to `group`. */
export function keysOwnedBy (view: Pick<ClusterView, 'groups' | 'ring'>, group: string, n: number, prefix: string): string[] {
  const ring = ringOfView(view)
  const out: string[] = []
  for (let i = 0; out.length < n; i++) {
    if (i > 100_000) throw new Error(`could not find ${n} keys of ${group}`)
    const key = `${prefix}/${i}`
    if (ring.ownerOf(key) === group) out.push(key)
  }
  return out
}
