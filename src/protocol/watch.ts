import { ShardKvError, type ErrorCode } from './errors'

/**
 * Change streams (`GET /watch?prefix=<p>&since=<cursor>` on a router, Server-Sent Events),
 * built on each group primary's change feed (`GET /internal/feed`, peer only).
 *
 * Guarantees, and what gives them:
 * - Only acknowledged-durable changes: a primary answers feed entries up to its group's
 *   replicated position only (what every in-sync replica holds; its own position when it
 *   has none), so no failover can take back an event already sent.
 * - Per key, commit order, none skipped: one key lives on one group at a time, and a
 *   group's feed is in seq (commit) order with an entry for every change — not the kv
 *   table's compacted log, which keeps only a key's last version.
 * - Resumable: a cursor says, per group, which term and seq the stream has delivered up
 *   to; a promoted replica holds its old primary's feed seq for seq (replication ships
 *   the feed), so a cursor stays good across a failover. Resuming is at-least-once: a
 *   reconnect may repeat events, never skips one.
 * - Compaction is explicit: a node keeps the feed for `--watch-retention-seconds`; a
 *   cursor older than what it holds is answered `cursor_compacted` with a cursor to
 *   restart from (after re-reading the prefix), never with a silent gap.
 */

/** Per group: the term and the last seq delivered. */
export type WatchCursor = Record<string, { t: number, s: number }>

/** A cursor is small: a few groups, numbers only. More is hostile input. */
const MAX_CURSOR_TEXT = 4096

export function encodeCursor (cursor: WatchCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url')
}

function badCursor (why: string): ShardKvError {
  return new ShardKvError('invalid_request', `the watch cursor is not one this cluster gave out (${why}); start without one, or from a cursor a stream sent`)
}

/** Parses an opaque cursor (since= or Last-Event-ID); throws a 400 for anything else. */
export function decodeCursor (text: string): WatchCursor {
  if (text.length > MAX_CURSOR_TEXT || !/^[A-Za-z0-9_-]*$/.test(text)) throw badCursor('not base64url, or too long')
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    throw badCursor('not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badCursor('not an object')
  const cursor: WatchCursor = {}
  for (const [group, pos] of Object.entries(parsed as Record<string, unknown>)) {
    const p = pos as { t?: unknown, s?: unknown } | null
    if (typeof p !== 'object' || p === null || !isCount(p.t) || !isCount(p.s)) throw badCursor(`group ${group} needs t and s`)
    cursor[group] = { t: p.t, s: p.s }
  }
  return cursor
}

function isCount (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** One change as the feed answers it (node → router). */
export interface WireFeedEvent {
  seq: number
  key: string
  op: 'put' | 'delete'
  /** The version as an ETag (quotes included). */
  etag: string
  /** A put's content type. */
  contentType?: string
  /** Why a change no client made happened: an expiry (a delete) or a key arriving in a rebalance (a put). */
  reason?: 'expired' | 'moved'
}

/** `GET /internal/feed?after=<seq>&prefix=<p>&limit=<n>`'s answer. Without `after`: only where it stands. */
export interface WireFeedReply {
  group: string
  term: number
  /** The durable position: no entry past it is answered yet. */
  position: number
  /** The node's log position (durable or not) when it answered: a barrier for per-key order across a rebalance. */
  stored: number
  /** Entries at or below it may be compacted away. */
  floor: number
  events: WireFeedEvent[]
  /** The seq to ask after next (the last entry examined, matching the prefix or not). */
  next: number
}

/** What a watcher receives per change (the SSE `data` of a `put` or `delete` event). */
export interface WatchEventData {
  key: string
  etag: string
  contentType?: string
  reason?: 'expired' | 'moved'
  group: string
}

/** A `progress` event's data: where every group's feed stands (the stream is caught up to its `id`). */
export interface WatchProgressData {
  groups: Record<string, number>
}

/** The codes a stream can end with (from the catalogue). */
export type WatchErrorCode = Extract<ErrorCode, 'cursor_compacted' | 'stream_overflow'>

/** An `error` event's data (the stream ends after it): an error body (errorObject) with these fields. */
export interface WatchErrorData {
  error: WatchErrorCode
  message: string
  /** cursor_compacted: a cursor to restart from, after re-reading the prefix. */
  restart?: string
  /** stream_overflow: the cursor to resume from (also the last event's id). */
  resume?: string
}

/** Whether a feed can answer from `after`: every entry after it must still be held. */
export function judgeFeedCursor (after: number, floor: number, storePosition: number): 'ok' | 'compacted' {
  // Before the floor: entries are gone. Past the node's own log: a cursor of another
  // history (a failover keeps every delivered seq, so this one was never delivered by
  // this group) — either way the stream must restart, not guess.
  return after < floor || after > storePosition ? 'compacted' : 'ok'
}

/** One Server-Sent Event, as written on the wire. */
export function sseEvent (type: string, id: string | undefined, data: unknown): string {
  return `event: ${type}\n${id !== undefined ? `id: ${id}\n` : ''}data: ${JSON.stringify(data)}\n\n`
}
