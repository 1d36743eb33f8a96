import type { AppliedRequest } from './applied-requests'
import type { FeedEntry } from './feed'
import type { ChangeRow, KvStore } from './store'

/**
 * A window of the change log: rows, applied-request records and change-feed entries with
 * after < seq <= to. All three streams are complete up to `to` (rows the log compacted
 * away are superseded by newer ones), so a receiver that applies it stands exactly at `to`.
 */
export interface LogWindow {
  rows: ChangeRow[]
  requests: AppliedRequest[]
  /** Every change in the window (rows hold only each key's last): a replica's feed is its primary's. */
  feed: FeedEntry[]
  to: number
  /** No more of any stream after `to` when the window was read. */
  complete: boolean
  /** The sender's request-id floor (receivers raise theirs to it). */
  floor: number
  /** The sender's change-feed floor (receivers raise theirs to it). */
  feedFloor: number
}

/**
 * The next window after `after`, read inside the caller's transaction (one snapshot): at
 * most `limit` of each stream and rows of at most `maxBytes` value bytes (one row at
 * least). When a stream fills its limit, the window ends where that stream's last entry
 * stands, and the others are cut there.
 */
export function readLogWindow (store: KvStore, after: number, limit: number, maxBytes: number): LogWindow {
  const rows = store.changesSince(after, limit)
  const requests = store.applied.after(after, limit)
  const feed = store.feed.range(after, Number.MAX_SAFE_INTEGER, limit)
  const lastOf = (seqs: ReadonlyArray<{ seq: number }>): number => seqs.length === limit ? (seqs[seqs.length - 1] as { seq: number }).seq : Infinity
  const end = Math.min(lastOf(rows), lastOf(requests), lastOf(feed), byteBoundedEnd(rows, maxBytes))
  const floor = store.applied.floor()
  const feedFloor = store.feed.floor()
  if (end === Infinity) return { rows, requests, feed, to: Math.max(after, store.position()), complete: true, floor, feedFloor }
  const upTo = (x: { seq: number }): boolean => x.seq <= end
  return { rows: rows.filter(upTo), requests: requests.filter(upTo), feed: feed.filter(upTo), to: end, complete: false, floor, feedFloor }
}

/** The last seq of the rows whose values fit in `maxBytes` (the first row always does); Infinity when all fit. */
export function byteBoundedEnd (rows: readonly ChangeRow[], maxBytes: number): number {
  let bytes = 0
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as ChangeRow
    bytes += row.value.length
    if (bytes > maxBytes && i > 0) return (rows[i - 1] as ChangeRow).seq
  }
  return Infinity
}
