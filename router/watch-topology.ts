import type { GroupState } from '../src/membership/map'
import type { WatchCursor } from '../src/protocol/watch'

/**
 * Per-key order when the stream's cursor and the map disagree about which groups exist
 * — a group added or removed while the stream lagged behind (a slow consumer, or a
 * client that reconnects with an old cursor after the rebalance finished). The handover
 * gate (watch-handover.ts) orders a key's events while the map still shows the handover;
 * these rules hold whatever the map shows now, because they rest only on the fence: a
 * group's writes to the keys it hands over all precede the moment it installed the map
 * that moved them, and that map was installed on every node before any router saw it.
 * So a feed read issued after the stream saw a map answers a log position (`stored`)
 * that is past every write the fence cut off.
 *
 * - **A group leaving (draining)** hands all its keys over: its events of a key precede
 *   every other group's events of it since the fence. So while a draining group's feed
 *   is not delivered up to its position as read after the stream saw it draining, no
 *   other group's events go out. Once it is, the cursor marks the group done (`d: 1`):
 *   it has nothing more to say, and it may leave the map.
 * - **A group gone from the map** that the cursor has not marked done may have held
 *   changes the stream never delivered, and no node serves its feed any more: the stream
 *   ends with `cursor_compacted` (re-read the prefix, restart) — never a silent gap.
 * - **A group new to the cursor** (added since) took its keys from the others, whose
 *   events of those keys precede its own: it is read (from its beginning) only once every
 *   other group was delivered up to its position as read after the stream saw the group.
 *   Two new groups at once (a cursor older than two additions) cannot be ordered against
 *   each other: that too is `cursor_compacted`.
 *
 * - **Groups that came and went unseen**: a group added and removed again entirely while a
 *   client was away, or a removed group's id reused by a new one meanwhile, leave the
 *   cursor and the map naming the same groups. The map counts every join and leave
 *   (ClusterMap.membership) and the cursor carries the count it was taken at: more changes
 *   than the difference between the cursor's groups and the map's explains is
 *   `cursor_compacted` (unseenGroupChanges).
 */

export interface MapGroup { id: string, state: GroupState }

/** What the stream does with a group this round. */
export type GroupRole =
  | 'read' // deliver its feed as usual
  | 'retire' // draining: deliver its feed to its end before any other group's
  | 'admit' // new to the cursor: not read until every other group passed a barrier
  | 'done' // draining and delivered to its end: nothing more to read

export interface TopologyPlan {
  roles: Map<string, GroupRole>
  /** Cursor groups gone from the map after their feed was delivered to its end: drop them. */
  forget: string[]
  /** Why the stream cannot go on without a gap (undefined: it can). */
  lost?: string
}

/** The roles of this round's groups, from the map's groups and the stream's cursor. */
export function planTopology (groups: readonly MapGroup[], cursor: WatchCursor): TopologyPlan {
  const roles = new Map<string, GroupRole>()
  const forget: string[] = []
  for (const g of groups) {
    const at = cursor[g.id]
    if (g.state === 'draining') {
      if (at === undefined) return { roles, forget, lost: `group ${g.id} joined and began leaving after this cursor was taken` }
      roles.set(g.id, at.d === 1 ? 'done' : 'retire')
    } else {
      // A done entry under an active group's id: a new group took the id of one that left.
      roles.set(g.id, at === undefined || at.d === 1 ? 'admit' : 'read')
    }
  }
  for (const [id, at] of Object.entries(cursor)) {
    if (roles.has(id)) continue
    if (at.d === 1) forget.push(id)
    else return { roles, forget, lost: `group ${id} left the cluster before this stream delivered all its changes` }
  }
  if ([...roles.values()].filter((r) => r === 'admit').length > 1) {
    return { roles, forget, lost: 'this cursor is older than more than one added group' }
  }
  return { roles, forget }
}

/**
 * Why the groups' joins and leaves since the cursor was taken are more than the cursor's and
 * the map's groups show (undefined: they are not). Every join or leave that the two group
 * sets differ by accounts for one; a count that went backwards is another cluster's map.
 */
export function unseenGroupChanges (seen: { groups: readonly string[], membership: number | undefined }, now: { groups: readonly string[], membership: number }): string | undefined {
  if (seen.membership === undefined) return undefined
  const happened = now.membership - seen.membership
  if (happened < 0) return 'this cursor was taken at a cluster map this cluster does not have'
  const before = new Set(seen.groups)
  const after = new Set(now.groups)
  let visible = 0
  for (const g of before) if (!after.has(g)) visible++
  for (const g of after) if (!before.has(g)) visible++
  return happened > visible ? `${happened - visible} group change(s) since this cursor was taken left no trace in it (a group added and removed again, or a removed group's id reused)` : undefined
}

/** Whether a group's delivered position has reached a barrier taken in its term (undefined: none taken yet). */
export function reached (cursor: WatchCursor, group: string, barrier: { term: number, at: number } | undefined): boolean {
  const c = cursor[group]
  return barrier !== undefined && c !== undefined && (c.d === 1 || (c.t === barrier.term && c.s >= barrier.at))
}

interface Barrier { term: number, at: number }

/**
 * The stream's state for these rules: barriers of the group being admitted and of the
 * groups being retired, each taken from a read issued after the stream saw the map
 * that called for it.
 */
export class Topology {
  private admitting: { group: string, barriers: Map<string, Barrier | undefined> } | undefined
  private readonly retiring = new Map<string, Barrier | undefined>()

  /** Starts (or keeps) the barriers this round's plan calls for. */
  begin (plan: TopologyPlan): void {
    const admit = [...plan.roles].find(([, r]) => r === 'admit')?.[0]
    if (admit === undefined) this.admitting = undefined
    else if (this.admitting?.group !== admit) {
      const others = [...plan.roles].filter(([g, r]) => g !== admit && (r === 'read' || r === 'retire')).map(([g]) => g)
      this.admitting = { group: admit, barriers: new Map(others.map((g) => [g, undefined])) }
    }
    for (const g of this.retiring.keys()) if (plan.roles.get(g) !== 'retire') this.retiring.delete(g)
    for (const [g, r] of plan.roles) if (r === 'retire' && !this.retiring.has(g)) this.retiring.set(g, undefined)
  }

  /** A feed answered in this round: its log position is a barrier for whatever waits on the group. */
  observe (group: string, reply: { term: number, stored: number }): void {
    const a = this.admitting?.barriers
    if (a?.has(group) === true && (a.get(group) === undefined || a.get(group)?.term !== reply.term)) a.set(group, { term: reply.term, at: reply.stored })
    // A failover may lose the old primary's unreplicated tail: a barrier is retaken in the new term.
    if (this.retiring.has(group) && this.retiring.get(group)?.term !== reply.term) this.retiring.set(group, { term: reply.term, at: reply.stored })
  }

  /** Marks retiring groups whose feed was delivered to its barrier done (in the cursor); returns whether any still retire. */
  retire (cursor: WatchCursor, roles: ReadonlyMap<string, GroupRole>): boolean {
    let pending = false
    for (const [g, role] of roles) {
      if (role !== 'retire') continue
      const entry = cursor[g]
      if (entry !== undefined && reached(cursor, g, this.retiring.get(g))) {
        cursor[g] = { t: entry.t, s: entry.s, d: 1 }
        this.retiring.delete(g)
      } else pending = true
    }
    return pending
  }

  /** The group to read from its beginning now (every other group passed its barrier), if any. */
  admitted (cursor: WatchCursor): string | undefined {
    const a = this.admitting
    // A barrier group missing from the cursor was delivered to its end and left the map.
    if (a === undefined || ![...a.barriers].every(([g, b]) => cursor[g] === undefined || reached(cursor, g, b))) return undefined
    this.admitting = undefined
    return a.group
  }
}
