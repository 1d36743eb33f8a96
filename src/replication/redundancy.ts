/**
 * How many copies of a group's acknowledged writes would survive losing its primary,
 * as the coordinator shows it in `GET /cluster` and the router metrics.
 *
 * - `ok`: at least one in-sync replica that is not known to be down — the next primary
 *   loss fails over to it.
 * - `none`: the group has replicas, but none is in sync and up (the primary acknowledges
 *   writes alone: the next loss of its primary loses the group until it returns). This
 *   is the state right after a failover, until the old primary (or a new replica) resyncs.
 * - `unreplicated`: the group has no replica at all (the operator chose so).
 */

export type Redundancy = 'ok' | 'none' | 'unreplicated'

export interface RedundancyNode {
  role: string
  inSync?: boolean
  health: string
}

export function redundancyOf (nodes: readonly RedundancyNode[]): { inSyncReplicas: number, redundancy: Redundancy } {
  const replicas = nodes.filter((n) => n.role === 'replica')
  const inSyncReplicas = replicas.filter((n) => n.inSync === true && n.health !== 'down').length
  const redundancy: Redundancy = replicas.length === 0 ? 'unreplicated' : inSyncReplicas === 0 ? 'none' : 'ok'
  return { inSyncReplicas, redundancy }
}

/**
 * What to log about redundancy now: a warning when a group enters `none` and again every
 * `repeatMs` while it lasts, a line when it recovers. `since` maps each group currently
 * flagged to [when it was flagged, when it was last logged] and is returned updated.
 */
export function redundancyNotices (
  groups: ReadonlyArray<{ id: string, redundancy: Redundancy }>,
  since: ReadonlyMap<string, readonly [number, number]>,
  now: number,
  repeatMs: number
): { since: Map<string, [number, number]>, warn: Array<{ group: string, forMs: number }>, recovered: Array<{ group: string, afterMs: number }> } {
  const next = new Map<string, [number, number]>()
  const warn: Array<{ group: string, forMs: number }> = []
  const recovered: Array<{ group: string, afterMs: number }> = []
  for (const g of groups) {
    const prev = since.get(g.id)
    if (g.redundancy !== 'none') {
      if (prev !== undefined) recovered.push({ group: g.id, afterMs: now - prev[0] })
      continue
    }
    if (prev === undefined) {
      warn.push({ group: g.id, forMs: 0 })
      next.set(g.id, [now, now])
    } else if (now - prev[1] >= repeatMs) {
      warn.push({ group: g.id, forMs: now - prev[0] })
      next.set(g.id, [prev[0], now])
    } else {
      next.set(g.id, [prev[0], prev[1]])
    }
  }
  // A group that left the map is neither flagged nor recovered.
  return { since: next, warn, recovered }
}
