import type { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShardKvError, errorObject, type ErrorBody } from '../src/protocol/errors'
import type { RoutingTable } from '../src/membership/routing-table'
import { encodeCursor, sseEvent, type WatchCursor, type WatchEventData, type WatchProgressData, type WireFeedEvent, type WireFeedReply } from '../src/protocol/watch'
import type { FeedClient } from './watch-feed-client'
import { HandoverGate } from './watch-handover'

/**
 * One watch stream: polls every group primary's change feed from the stream's cursor and
 * writes each change as a Server-Sent Event whose `id` is the cursor just after it, so a
 * client that reconnects with it (Last-Event-ID or since=) resumes exactly there.
 *
 * A group that fails to answer (down, failing over, 421) is asked again on the next
 * round, from the same cursor, at whichever node the map then names its primary: the new
 * primary holds the same feed (src/protocol/watch.ts). A group new in the map is read from
 * its beginning. The stream's output is bounded: while more than HIGH_WATER bytes wait to
 * reach the socket the stream reads no more, and a client that does not take them within
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
  since: WatchCursor | undefined
  pollMs: number
  progressMs: number
  /** Counts events sent (metrics). */
  onEvents: (count: number) => void
}

/** Entries asked per feed read. */
const FEED_BATCH = 500
const HIGH_WATER = 256 * 1024
const OVERFLOW_MS = 10_000

/** The primary of every group in the map (groups without one are skipped this round). */
export function groupPrimaries (table: RoutingTable): Map<string, string> {
  const primaries = new Map<string, string>()
  for (const n of table.nodes) if (n.role === 'primary') primaries.set(n.group, n.url)
  return primaries
}

export class WatchStream {
  private readonly cursor: WatchCursor
  private closed = false
  private lastProgress = 0
  private readonly wake = new AbortController()
  private readonly gate = new HandoverGate()

  constructor (private readonly o: WatchStreamOptions) {
    this.cursor = { ...(o.since ?? {}) }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
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
        if (!await this.drained()) return this.fail(errorObject('stream_overflow', 'the client did not keep up; resume from the last event id', { resume: encodeCursor(this.cursor) }))
        if (!more) await sleep(this.o.pollMs, undefined, { signal: this.wake.signal }).catch(() => undefined)
      }
    } catch (err) {
      if (err instanceof ShardKvError && err.code === 'cursor_compacted') return
      throw err
    } finally {
      if (!this.o.out.writableEnded) this.o.out.end()
    }
  }

  /** Positions every group at its feed's current durable position (retrying until each answers). */
  private async startAtNow (): Promise<void> {
    while (!this.closed) {
      const primaries = groupPrimaries(this.o.table())
      const missing = [...primaries].filter(([g]) => this.cursor[g] === undefined)
      if (missing.length === 0) return
      await Promise.all(missing.map(async ([group, url]) => {
        try {
          const r = await this.o.feeds.read(url, undefined, this.o.prefix, 1)
          this.cursor[group] = { t: r.term, s: r.position }
        } catch { /* asked again */ }
      }))
      if (missing.some(([g]) => this.cursor[g] === undefined)) await sleep(this.o.pollMs)
    }
  }

  /** Reads every group once (but those held back by a rebalance); `more`: some feed had more than one batch. */
  private async round (): Promise<{ more: boolean, positions: Map<string, number> }> {
    const table = this.o.table()
    const primaries = groupPrimaries(table)
    const groupOfPrimary = new Map([...primaries].map(([g, url]) => [url, g]))
    this.gate.nextRound()
    const replies = await Promise.all([...primaries].filter(([g]) => !this.gate.isHeld(g)).map(async ([group, url]) => {
      const at = this.cursor[group]?.s ?? 0
      try {
        return { group, url, reply: await this.o.feeds.read(url, at, this.o.prefix, FEED_BATCH) }
      } catch (err) {
        if (err instanceof ShardKvError && err.code === 'cursor_compacted') return { group, url, compacted: true as const }
        return { group, url }
      }
    }))
    let more = false
    const positions = new Map<string, number>()
    const answered = new Map<string, WireFeedReply>()
    // Events go out group by group: the order between groups is not a guarantee, a key's order is.
    for (const r of replies) {
      if ('compacted' in r) await this.compacted(r.group, r.url)
      if (r.reply === undefined || this.closed) continue
      answered.set(r.group, r.reply)
      const events = this.gate.admit(table, r.group, r.reply, groupOfPrimary)
      this.deliver(r.group, r.reply.term, events, this.gate.isHeld(r.group) ? undefined : r.reply.next)
      positions.set(r.group, r.reply.position)
      if (r.reply.next < r.reply.position) more = true
    }
    for (const [group, held] of this.gate.release(table, answered, new Set(primaries.keys()))) {
      this.deliver(group, held.term, held.events, held.next)
      more = true
    }
    return { more, positions }
  }

  /** Sends events in order; `next` (undefined: some are held back) is where the group's cursor then stands. */
  private deliver (group: string, term: number, events: readonly WireFeedEvent[], next: number | undefined): void {
    for (const ev of events) {
      this.cursor[group] = { t: term, s: ev.seq }
      const data: WatchEventData = { key: ev.key, etag: ev.etag, group }
      if (ev.contentType !== undefined) data.contentType = ev.contentType
      if (ev.reason !== undefined) data.reason = ev.reason
      this.o.out.write(sseEvent(ev.op, encodeCursor(this.cursor), data))
    }
    if (next !== undefined) this.cursor[group] = { t: term, s: next }
    if (events.length > 0) this.o.onEvents(events.length)
  }

  private progress (positions: Map<string, number>): void {
    this.lastProgress = Date.now()
    const data: WatchProgressData = { groups: Object.fromEntries(positions) }
    this.o.out.write(sseEvent('progress', encodeCursor(this.cursor), data))
  }

  /** The cursor is older than a group's feed: say so, with a cursor to restart from, and end. */
  private async compacted (group: string, url: string): Promise<never> {
    let restart: WatchCursor = { ...this.cursor }
    try {
      const now = await this.o.feeds.read(url, undefined, this.o.prefix, 1)
      restart = { ...restart, [group]: { t: now.term, s: now.position } }
    } catch {
      delete restart[group]
    }
    this.fail(errorObject('cursor_compacted', `group ${group} no longer holds the changes after this cursor; re-read the prefix, then watch from restart`, { restart: encodeCursor(restart) }))
    throw new ShardKvError('cursor_compacted', 'compacted')
  }

  private fail (data: ErrorBody): void {
    if (!this.o.out.writableEnded) this.o.out.end(sseEvent('error', undefined, data))
    this.close()
  }

  /** Waits until at most HIGH_WATER bytes wait for the socket; false when that takes over OVERFLOW_MS. */
  private async drained (): Promise<boolean> {
    const out = this.o.out
    const deadline = Date.now() + OVERFLOW_MS
    while (out.writableLength + out.readableLength > HIGH_WATER && !this.closed) {
      if (Date.now() > deadline) return false
      await sleep(this.o.pollMs)
    }
    return true
  }
}
