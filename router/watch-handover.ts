import type { RoutingTable } from '../src/membership/routing-table'
import type { WireFeedEvent, WireFeedReply } from '../src/protocol/watch'

/**
 * Per-key order across a rebalance. While a key moves from group S to group T, its
 * writes before the fence are in S's feed and those after it in T's; a stream that
 * delivered T's first (T's feed was read later, or S's last writes became durable late)
 * would reorder the key. So from T's first event of a moving key on, T's events are
 * held until S's feed has been delivered up to a barrier: S's log position as read by a
 * request that started after T's event was received. Every write S committed to a moving
 * key precedes the fence, and T accepted none before it, so S's writes to the key are all
 * at or below the barrier; once S's durable position passes it (and its events were
 * delivered), T's held events — and every later one of this handover — may go.
 * A source whose feed the stream delivered to its end (a draining group it retired, see
 * watch-topology.ts) holds nothing more to wait for; one that left the map before that
 * ends the stream there (cursor_compacted), so the hold never lets a gap through.
 */

export interface Held {
  term: number
  events: WireFeedEvent[]
  next: number
  /** Source group → its barrier (undefined until read in a later round). */
  barriers: Map<string, number | undefined>
  /** The round the hold began in: barriers come only from later rounds' reads. */
  round: number
}

/** The group a key is moving from into `group` in an unsettled rebalance (undefined: not moving). */
export function movingFrom (table: RoutingTable, key: string, group: string, groupOfPrimary: ReadonlyMap<string, string>): string | undefined {
  const source = table.handoverSourceOf(key)
  if (source === undefined) return undefined
  const from = groupOfPrimary.get(source)
  return from === undefined || from === group ? undefined : from
}

/** Whether every source of a hold has been delivered past its barrier (-1). */
export function holdSatisfied (held: Held): boolean {
  return [...held.barriers.values()].every((b) => b === -1)
}

export class HandoverGate {
  private readonly held = new Map<string, Held>()
  private readonly cleared = new Set<string>()
  private rounds = 0

  /** Starts a round of feed reads. */
  nextRound (): void {
    this.rounds++
  }

  isHeld (group: string): boolean {
    return this.held.has(group)
  }

  /** The events of `reply` that may go now; the rest (from the first moving key on) is held. */
  admit (table: RoutingTable, group: string, reply: WireFeedReply, groupOfPrimary: ReadonlyMap<string, string>): WireFeedEvent[] {
    if (table.map.handover === undefined || this.cleared.has(`${table.epoch}/${group}`)) return reply.events
    const first = reply.events.findIndex((e) => movingFrom(table, e.key, group, groupOfPrimary) !== undefined)
    if (first === -1) return reply.events
    const rest = reply.events.slice(first)
    const barriers = new Map<string, number | undefined>()
    for (const e of rest) {
      const from = movingFrom(table, e.key, group, groupOfPrimary)
      if (from !== undefined) barriers.set(from, undefined)
    }
    this.held.set(group, { term: reply.term, events: rest, next: reply.next, barriers, round: this.rounds })
    return reply.events.slice(0, first)
  }

  /**
   * After a round's events went out: updates barriers from this round's source replies
   * and returns the holds that may now be delivered (in the order they were held).
   */
  release (table: RoutingTable, replies: ReadonlyMap<string, WireFeedReply>, finished: (group: string) => boolean): Array<[string, Held]> {
    const out: Array<[string, Held]> = []
    for (const [group, held] of this.held) {
      if (held.round < this.rounds) {
        for (const [source, barrier] of held.barriers) {
          const r = replies.get(source)
          if (r === undefined || barrier === -1) continue
          // -1 marks a barrier passed: this source's writes to moving keys are all delivered.
          const at = barrier ?? r.stored
          held.barriers.set(source, r.position >= at && r.next >= at ? -1 : at)
        }
      }
      for (const source of held.barriers.keys()) if (finished(source)) held.barriers.set(source, -1)
      if (holdSatisfied(held)) {
        this.held.delete(group)
        this.cleared.add(`${table.epoch}/${group}`)
        out.push([group, held])
      }
    }
    return out
  }
}
