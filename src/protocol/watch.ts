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
 * - Groups joining and leaving: the router orders a key's events across a rebalance
 *   (router/watch-handover.ts while the map shows it, router/watch-topology.ts for a
 *   stream that lags behind it); a removed group is let go of only once the cursor
 *   reached its end (`d: 1`), else the stream ends with `cursor_compacted`.
 * - Values (`values=1`): only the table's live version of a key has bytes to send; an
 *   older version's put says `valueOmitted` (ValueOmitted).
 */

/**
 * Per group: the term and the last seq delivered; `d: 1` once a draining group's whole
 * feed was delivered (its last position reached: nothing more can come from it), so
 * the group may leave the map without the cursor losing anything.
 */
export type WatchCursor = Record<string, WatchCursorEntry>
export interface WatchCursorEntry { t: number, s: number, d?: 1 }

/** A cursor is small: a few groups, numbers only. More is hostile input. */
const MAX_CURSOR_TEXT = 4096

/**
 * Where a stream resumes: the cursor, and the map's membership count (ClusterMap.membership)
 * it was taken at — absent in a cursor of a router that did not count yet.
 */
export interface ResumePoint { cursor: WatchCursor, membership?: number }

/** The membership count's key in an encoded cursor: group ids never start with `_`. */
const MEMBERSHIP_KEY = '_m'

export function encodeCursor (cursor: WatchCursor, membership?: number): string {
  return Buffer.from(JSON.stringify(membership === undefined ? cursor : { ...cursor, [MEMBERSHIP_KEY]: membership })).toString('base64url')
}

function badCursor (why: string): ShardKvError {
  return new ShardKvError('invalid_request', `the watch cursor is not one this cluster gave out (${why}); start without one, or from a cursor a stream sent`)
}

/** Parses an opaque cursor (since= or Last-Event-ID); throws a 400 for anything else. */
export function decodeResumePoint (text: string): ResumePoint {
  if (text.length > MAX_CURSOR_TEXT || !/^[A-Za-z0-9_-]*$/.test(text)) throw badCursor('not base64url, or too long')
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
  } catch {
    throw badCursor('not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badCursor('not an object')
  const cursor: WatchCursor = {}
  let membership: number | undefined
  for (const [group, pos] of Object.entries(parsed as Record<string, unknown>)) {
    if (group === MEMBERSHIP_KEY) {
      if (!isCount(pos)) throw badCursor(`${MEMBERSHIP_KEY} must be a count`)
      membership = pos
      continue
    }
    const p = pos as { t?: unknown, s?: unknown, d?: unknown } | null
    if (typeof p !== 'object' || p === null || !isCount(p.t) || !isCount(p.s)) throw badCursor(`group ${group} needs t and s`)
    if (p.d !== undefined && p.d !== 1) throw badCursor(`group ${group}: d can only be 1`)
    cursor[group] = p.d === 1 ? { t: p.t, s: p.s, d: 1 } : { t: p.t, s: p.s }
  }
  return membership === undefined ? { cursor } : { cursor, membership }
}

/** The cursor alone (the groups' positions). */
export function decodeCursor (text: string): WatchCursor {
  return decodeResumePoint(text).cursor
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
  /** Asked with `values=1`, a put whose version is still the key's live value: its bytes, base64. */
  value?: string
  /** Asked with `values=1`, a put whose version was overwritten, deleted or expired before the feed was read. */
  valueOmitted?: ValueOmitted
}

/**
 * Why a put event carries no value although values were asked for. The feed keeps every
 * change but the table only each key's last value (a feed of values would hold every
 * version for the retention window): an older version's bytes are gone. The key's later
 * event (a put with the newer value, or a delete) follows on the same stream.
 */
export type ValueOmitted = 'superseded'

/** `GET /internal/feed`'s query: after=<seq>&prefix=<p>&limit=<n>[&values=1]. */
export const FEED_VALUES_PARAM = 'values'
/**
 * Value bytes one feed answer carries at most, but for its first value, which always
 * goes (whatever its size): with values, an answer ends early rather than grow to
 * limit × the largest value. So an answer holds max(budget, the largest value) bytes of values.
 */
export const FEED_VALUE_BUDGET = 1024 * 1024

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
  /**
   * With `values=1`, on a put: the value, as UTF-8 text (`encoding: "utf8"`) when its
   * content type is textual (text/*, JSON, XML, form data) and its bytes are valid UTF-8,
   * else base64 (`encoding: "base64"`).
   */
  value?: string
  encoding?: ValueEncoding
  /** With `values=1`, on a put whose value is no longer held (see ValueOmitted). */
  valueOmitted?: ValueOmitted
}

export type ValueEncoding = 'utf8' | 'base64'

const TEXTUAL = /^(text\/|application\/(json|xml|x-www-form-urlencoded|javascript)\b|[^;]*\+(json|xml)\b)/i

/** How a value travels in a watch event: text for textual content types with valid UTF-8 bytes, else base64. */
export function encodeEventValue (bytes: Buffer, contentType: string): { value: string, encoding: ValueEncoding } {
  if (TEXTUAL.test(contentType.trim())) {
    const text = bytes.toString('utf8')
    // A lossless round trip is the UTF-8 validity check (invalid bytes become U+FFFD).
    if (Buffer.byteLength(text) === bytes.length && Buffer.from(text, 'utf8').equals(bytes)) return { value: text, encoding: 'utf8' }
  }
  return { value: bytes.toString('base64'), encoding: 'base64' }
}

/** The bytes of an event's value (the inverse of encodeEventValue). */
export function decodeEventValue (value: string, encoding: ValueEncoding | undefined): Buffer {
  return encoding === 'utf8' ? Buffer.from(value, 'utf8') : Buffer.from(value, 'base64')
}

/** A `progress` event's data: where every group's feed stands (the stream is caught up to its `id`). */
export interface WatchProgressData {
  /** The durable position of every group whose feed answered this round. */
  groups: Record<string, number>
  /**
   * Groups of the map the stream is not caught up with: their feed did not answer this round
   * (a primary down or unreachable), or they wait their turn in a rebalance. Absent when none.
   */
  lagging?: string[]
}

/** Why a stream ended (the router's `shardkv_router_watch_streams_ended_total{reason}`). */
export type StreamEndReason = 'client_closed' | 'cursor_compacted' | 'stream_overflow' | 'router_closing' | 'failed'

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
