import type Database from 'better-sqlite3'
import { META } from './schema'

/**
 * The change feed: one entry per committed change (key, version, content type, put or
 * delete, and why a delete happened), in seq order, kept for a retention window. The
 * `kv` table is a *compacted* log — a key written twice between two reads shows only
 * its last version — so a watcher that must see every acknowledged write of a key
 * reads this instead (src/protocol/watch.ts has the guarantees).
 *
 * Entries are written in the same transaction as the change and carry its seq, so the
 * feed and the data never disagree. Replication ships them with the rows (a replica's
 * feed is its primary's, seq for seq: a promoted replica serves the same feed); a
 * migration import writes an entry (reason "moved") for each row it inserts.
 *
 * Retention moves the feed's *floor* (meta `feed_floor`): entries with seq at or below
 * it may be gone, so a cursor before it is refused (`cursor_compacted`), never answered
 * with a silent gap. A floor only rises; a replica's rises to its primary's.
 */

export type FeedReason = 'expired' | 'moved'

export interface FeedEntry {
  seq: number
  key: string
  version: string
  contentType: string
  deleted: boolean
  /** Why a change that is not a client's own write happened (null: a client wrote it). */
  reason: FeedReason | null
  /** When it was committed (ms since the epoch, on the committing node): what retention goes by. */
  at: number
}

interface RawEntry { seq: number, key: string, version: string, content_type: string, deleted: number, reason: string | null, at: number }

/** Most entries compaction deletes in one transaction (bounded work per pass). */
const COMPACT_BATCH = 5000

function fromRaw (r: RawEntry): FeedEntry {
  return { seq: r.seq, key: r.key, version: r.version, contentType: r.content_type, deleted: r.deleted === 1, reason: r.reason === 'expired' || r.reason === 'moved' ? r.reason : null, at: r.at }
}

export class ChangeFeed {
  private readonly insertStmt: Database.Statement<[number, string, string, string, number, string | null, number]>
  private readonly rangeStmt: Database.Statement<[number, number, number], RawEntry>
  private readonly floorStmt: Database.Statement<[], { value: number }>
  private readonly setFloorStmt: Database.Statement<[{ floor: number }]>
  private readonly cutoffStmt: Database.Statement<[number, number], { seq: number }>
  private readonly deleteStmt: Database.Statement<[number]>
  private readonly statsStmt: Database.Statement<[], { entries: number, oldest: number | null }>

  constructor (private readonly db: Database.Database) {
    this.insertStmt = db.prepare('INSERT OR REPLACE INTO feed (seq, key, version, content_type, deleted, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)')
    this.rangeStmt = db.prepare('SELECT seq, key, version, content_type, deleted, reason, at FROM feed WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?')
    this.floorStmt = db.prepare(`SELECT value FROM meta WHERE name = '${META.feedFloor}'`)
    this.setFloorStmt = db.prepare(`INSERT INTO meta (name, value) VALUES ('${META.feedFloor}', @floor) ON CONFLICT (name) DO UPDATE SET value = MAX(value, @floor)`)
    // The newest entry older than the cutoff, among the oldest COMPACT_BATCH: bounded per pass.
    this.cutoffStmt = db.prepare('SELECT seq FROM (SELECT seq, at FROM feed ORDER BY seq LIMIT ?) WHERE at < ? ORDER BY seq DESC LIMIT 1')
    this.deleteStmt = db.prepare('DELETE FROM feed WHERE seq <= ?')
    this.statsStmt = db.prepare('SELECT COUNT(*) AS entries, MIN(at) AS oldest FROM feed')
  }

  record (e: FeedEntry): void {
    this.insertStmt.run(e.seq, e.key, e.version, e.contentType, e.deleted ? 1 : 0, e.reason, e.at)
  }

  /** Entries with after < seq <= upTo, at most `limit`, in seq order. */
  range (after: number, upTo: number, limit: number): FeedEntry[] {
    return this.rangeStmt.all(after, upTo, limit).map(fromRaw)
  }

  /** Entries at or below this seq may have been compacted away. */
  floor (): number {
    return this.floorStmt.get()?.value ?? 0
  }

  /** Raises the floor (never lowers it). */
  raiseFloor (floor: number): void {
    if (floor > 0) this.setFloorStmt.run({ floor })
  }

  /** Deletes entries committed before `cutoff` (at most COMPACT_BATCH), raising the floor first. */
  compact (cutoff: number): number {
    return this.db.transaction(() => {
      const last = this.cutoffStmt.get(COMPACT_BATCH, cutoff)
      if (last === undefined) return 0
      this.raiseFloor(last.seq)
      return this.deleteStmt.run(last.seq).changes
    }).immediate()
  }

  stats (): { entries: number, oldestAt: number | null, floor: number } {
    const s = this.statsStmt.get()
    return { entries: s?.entries ?? 0, oldestAt: s?.oldest ?? null, floor: this.floor() }
  }

  clear (): void {
    this.db.prepare('DELETE FROM feed').run()
    this.db.prepare(`DELETE FROM meta WHERE name = '${META.feedFloor}'`).run()
  }
}
