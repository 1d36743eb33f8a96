import type { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShardKvError, errorObject, type ErrorBody } from '../src/protocol/errors'
import type { RoutingTable } from '../src/membership/routing-table'
import { encodeCursor, encodeEventValue, sseEvent, type ResumePoint, type StreamEndReason, type WatchCursor, type WatchEventData, type WatchProgressData, type WireFeedEvent, type WireFeedReply } from '../src/protocol/watch'
import type { FeedClient } from './watch-feed-client'
import { HandoverGate } from './watch-handover'
import { planTopology, Topology, unseenGroupChanges } from './watch-topology'

/**
 * One watch stream: polls every group primary's change feed from the stream's cursor and
 * writes each change as a Server-Sent Event whose `id` is the cursor just after it, so a
 * client that reconnects with it (Last-Event-ID or since=) resumes exactly there.
 *
 * A group that fails to answer (down, failing over, 421) is asked again on the next
 * round, from the same cursor, at whichever node the map then names its primary: the new
 * primary holds the same feed (src/protocol/watch.ts). Groups that join or leave the map
 * are read in the order watch-topology.ts gives, so a lagging stream keeps each key's
 * order too, or ends with `cursor_compacted` when it no longer can. The stream's output is
 * bounded in bytes (values included): while more than `bufferBytes` wait to reach the
 * socket the stream reads no more, and a client that does not take them within
 * OVERFLOW_MS gets a `stream_overflow` error event and the stream ends (resume from the
 * last id).
 */

export interface WatchStreamOptions {
  /** What the route sends as the response body (fastify pipes it to the socket). */
  out: PassThrough
  table: () => RoutingTable
  feeds: FeedClient
  prefix: string
  /** Where to start (undefined: at the feeds' current positions). */
  since: ResumePoint | undefined
  pollMs: number
  progressMs: number
  /** Put events carry the value (values=1). */
  values: boolean
  /** Bytes of events that may wait for the socket before the stream stops reading (--watch-stream-buffer-bytes). */
  bufferBytes: number
  /** Counts events sent (metrics). */
  onEvents: (count: number) => void
}

/** Entries asked per feed read. */
const FEED_BATCH = 500
const OVERFLOW_MS = 10_000

/** A feed entry as a watcher receives it. */
export function eventData (group: string, ev: WireFeedEvent): WatchEventData {
  const data: WatchEventData = { key: ev.key, etag: ev.etag, group }
  if (ev.contentType !== undefined) data.contentType = ev.contentType
  if (ev.reason !== undefined) data.reason = ev.reason
  if (ev.value !== undefined) Object.assign(data, encodeEventValue(Buffer.from(ev.value, 'base64'), ev.contentType ?? ''))
  if (ev.valueOmitted !== undefined) data.valueOmitted = ev.valueOmitted
  return data
}

/** The primary of every group in the map (groups without one are skipped this round). */
export function groupPrimaries (table: RoutingTable): Map<string, string> {
  const primaries = new Map<string, string>()
  for (const n of table.nodes) if (n.role === 'primary') primaries.set(n.group, n.url)
  return primaries
}

export class WatchStream {
  private readonly cursor: WatchCursor
  /** The map's membership count the cursor is as of (undefined: a cursor from before counting). */
  private membership: number | undefined
  private closed = false
  private lastProgress = 0
  private readonly wake = new AbortController()
  private readonly gate = new HandoverGate()
  private readonly topology = new Topology()
  /** This round's feed answers (the gate's barriers). */
  private readonly answered = new Map<string, WireFeedReply>()
  /** Why the stream ended (undefined while it runs). */
  endReason: StreamEndReason | undefined

  constructor (private readonly o: WatchStreamOptions) {
    this.cursor = { ...(o.since?.cursor ?? {}) }
    this.membership = o.since?.membership
  }

  /** Ends the stream (the client left, or the router closes). */
  close (reason: StreamEndReason = 'client_closed'): void {
    if (this.closed) return
    this.closed = true
    this.endReason ??= reason
    this.wake.abort()
  }

  async run (): Promise<void> {
    try {
      if (this.o.since === undefined) await this.startAtNow()
      // lastProgress is 0: the first round ends with a progress event (the stream's first
      // event when nothing changed: the client then holds a cursor).
      while (!this.closed) {
        const { more, positions } = await this.round()
        if (this.closed) break
        if (Date.now() - this.lastProgress >= this.o.progressMs) this.progress(positions)
        if (!await this.drained()) return this.fail(errorObject('stream_overflow', 'the client did not keep up; resume from the last event id', { resume: encodeCursor(this.cursor, this.membership) }), 'stream_overflow')
        if (!more) await sleep(this.o.pollMs, undefined, { signal: this.wake.signal }).catch(() => undefined)
      }
    } catch (err) {
      if (err instanceof ShardKvError && err.code === 'cursor_compacted') return
      this.endReason ??= 'failed'
      throw err
    } finally {
      if (!this.o.out.writableEnded) this.o.out.end()
    }
  }

  /** Positions every group at its feed's current durable position (retrying until each answers). */
  private async startAtNow (): Promise<void> {
    this.membership = this.o.table().map.membership ?? 0
    while (!this.closed) {
      const primaries = groupPrimaries(this.o.table())
      const missing = [...primaries].filter(([g]) => this.cursor[g] === undefined)
      if (missing.length === 0) return
      await Promise.all(missing.map(async ([group, url]) => {
        try {
          const r = await this.o.feeds.read(url, undefined, this.o.prefix, 1, false)
          this.cursor[group] = { t: r.term, s: r.position }
        } catch { /* asked again */ }
      }))
      if (missing.some(([g]) => this.cursor[g] === undefined)) await sleep(this.o.pollMs)
    }
  }

  /**
   * Reads the groups once, as the map and the cursor call for (watch-topology.ts): first
   * the draining groups the stream has not delivered to their end (nothing else goes out
   * until they are), then the others but those held back by a rebalance (watch-handover.ts)
   * or waiting to be admitted. `more`: some feed has more to read now.
   */
  private async round (): Promise<{ more: boolean, positions: Map<string, number> }> {
    const table = this.o.table()
    const primaries = groupPrimaries(table)
    const membership = table.map.membership ?? 0
    const unseen = unseenGroupChanges({ groups: Object.keys(this.cursor), membership: this.membership }, { groups: table.map.groups.map((g) => g.id), membership })
    if (unseen !== undefined) return await this.lost(unseen)
    const plan = planTopology(table.map.groups, this.cursor)
    if (plan.lost !== undefined) return await this.lost(plan.lost)
    this.membership = membership
    for (const g of plan.forget) delete this.cursor[g]
    this.topology.begin(plan)
    this.gate.nextRound()
    this.answered.clear()
    const positions = new Map<string, number>()
    const retiring = [...primaries].filter(([g]) => plan.roles.get(g) === 'retire')
    if (retiring.length > 0) {
      const more = await this.readAndDeliver(table, retiring, primaries, positions)
      // Still short of the end (replication behind, or no answer): the next round, after
      // the poll interval unless a feed has more right now.
      if (this.topology.retire(this.cursor, plan.roles)) return { more, positions }
    }
    const readable = [...primaries].filter(([g]) => plan.roles.get(g) === 'read' && !this.gate.isHeld(g))
    let more = await this.readAndDeliver(table, readable, primaries, positions)
    const finished = (g: string): boolean => plan.roles.get(g) === undefined || this.cursor[g]?.d === 1
    for (const [group, held] of this.gate.release(table, this.answered, finished)) {
      this.deliver(group, held.term, held.events, held.next)
      more = true
    }
    const admitted = this.topology.admitted(this.cursor)
    if (admitted !== undefined) {
      // Read from its beginning (its whole feed, if still held: else cursor_compacted).
      this.cursor[admitted] = { t: 0, s: 0 }
      more = true
    }
    return { more, positions }
  }

  /** Reads these groups' feeds from the cursor and delivers what the gate lets go; true when a feed has more. */
  private async readAndDeliver (table: RoutingTable, groups: Array<[string, string]>, primaries: Map<string, string>, positions: Map<string, number>): Promise<boolean> {
    const groupOfPrimary = new Map([...primaries].map(([g, url]) => [url, g]))
    const replies = await Promise.all(groups.map(async ([group, url]) => {
      try {
        return { group, url, reply: await this.o.feeds.read(url, this.cursor[group]?.s ?? 0, this.o.prefix, FEED_BATCH, this.o.values) }
      } catch (err) {
        if (err instanceof ShardKvError && err.code === 'cursor_compacted') return { group, url, compacted: true as const }
        return { group, url }
      }
    }))
    let more = false
    // Events go out group by group: the order between groups is not a guarantee, a key's order is.
    for (const r of replies) {
      if ('compacted' in r) await this.compacted(r.group)
      if (r.reply === undefined || this.closed) continue
      this.answered.set(r.group, r.reply)
      this.topology.observe(r.group, r.reply)
      const events = this.gate.admit(table, r.group, r.reply, groupOfPrimary)
      this.deliver(r.group, r.reply.term, events, this.gate.isHeld(r.group) ? undefined : r.reply.next)
      positions.set(r.group, r.reply.position)
      if (r.reply.next < r.reply.position) more = true
    }
    return more
  }

  /** Sends events in order; `next` (undefined: some are held back) is where the group's cursor then stands. */
  private deliver (group: string, term: number, events: readonly WireFeedEvent[], next: number | undefined): void {
    for (const ev of events) {
      this.cursor[group] = { t: term, s: ev.seq }
      this.o.out.write(sseEvent(ev.op, encodeCursor(this.cursor, this.membership), eventData(group, ev)))
    }
    if (next !== undefined) this.cursor[group] = { t: term, s: next }
    if (events.length > 0) this.o.onEvents(events.length)
  }

  private progress (positions: Map<string, number>): void {
    this.lastProgress = Date.now()
    // A group that did not answer must not read as caught up: an idle client trusts progress.
    const lagging = this.o.table().map.groups.map((g) => g.id).filter((g) => !positions.has(g))
    const data: WatchProgressData = { groups: Object.fromEntries(positions), ...(lagging.length > 0 ? { lagging } : {}) }
    this.o.out.write(sseEvent('progress', encodeCursor(this.cursor, this.membership), data))
  }

  /** The cursor is older than a group's feed: say so, with a cursor to restart from, and end. */
  private async compacted (group: string): Promise<never> {
    return await this.lost(`group ${group} no longer holds the changes after this cursor`)
  }

  /**
   * Changes after the cursor can no longer be delivered: an error event with a cursor of
   * where every group stands now (a client that re-reads the prefix after it misses
   * nothing from there on), and the stream ends.
   */
  private async lost (why: string): Promise<never> {
    const restart: WatchCursor = {}
    await Promise.all([...groupPrimaries(this.o.table())].map(async ([group, url]) => {
      try {
        const now = await this.o.feeds.read(url, undefined, this.o.prefix, 1, false)
        restart[group] = { t: now.term, s: now.position }
      } catch { /* left out: read from its beginning on restart */ }
    }))
    this.fail(errorObject('cursor_compacted', `${why}; re-read the prefix, then watch from restart`, { restart: encodeCursor(restart, this.o.table().map.membership ?? 0) }), 'cursor_compacted')
    throw new ShardKvError('cursor_compacted', why)
  }

  private fail (data: ErrorBody, reason: StreamEndReason): void {
    if (!this.o.out.writableEnded) this.o.out.end(sseEvent('error', undefined, data))
    this.close(reason)
  }

  /** Waits until at most bufferBytes wait for the socket; false when that takes over OVERFLOW_MS. */
  private async drained (): Promise<boolean> {
    const out = this.o.out
    const deadline = Date.now() + OVERFLOW_MS
    while (out.writableLength + out.readableLength > this.o.bufferBytes && !this.closed) {
      if (Date.now() > deadline) return false
      await sleep(this.o.pollMs)
    }
    return true
  }
}
