import type Database from 'better-sqlite3'
import type { KvStore } from './store'
import { APPLIED_COLUMNS, appliedFromRow, type AppliedRequest, type RawApplied } from './applied-requests'

/**
 * The source side of a migration: the next stretch of the change log, and of it the rows
 * and applied-request records of the keys that move away. A row's key is in the seq
 * index, so the ownership test runs inside SQLite (the `shardkv_moving` function) before
 * the row itself is read: a rebalance moves a quarter of a group's keys or less, and
 * reading every row into JavaScript to drop most of them was most of a source's cost.
 */

export interface MovingRow {
  key: string
  value: Buffer
  contentType: string
  version: string
  seq: number
  expiresAt: number | null
}

/** The stretch (after, to] of the log, read in one snapshot. */
export interface MovingWindow {
  /** Live rows of moving keys, in seq order. */
  rows: MovingRow[]
  /** Records of moving keys (tombstoned ones included), in seq order. */
  requests: AppliedRequest[]
  to: number
  /** Nothing is in the log past `to` (yet). */
  complete: boolean
  floor: number
}

interface RawMovingRow { key: string, value: Buffer, content_type: string, version: string, seq: number, expires_at: number | null }

export class MigrationScan {
  /** The predicate of the scan running now (scans are synchronous, one at a time). */
  private moving: (key: string) => boolean = () => false
  private readonly nthRowStmt: Database.Statement<[number, number], { seq: number }>
  private readonly nthRecordStmt: Database.Statement<[number, number], { seq: number }>
  private readonly rowsStmt: Database.Statement<[number, number], RawMovingRow>
  private readonly recordsStmt: Database.Statement<[number, number], RawApplied>
  private readonly countStmt: Database.Statement<[number, number], { n: number }>
  private readonly read: (after: number, limit: number) => MovingWindow

  constructor (db: Database.Database, private readonly store: KvStore) {
    db.function('shardkv_moving', { deterministic: false }, (key: unknown) => typeof key === 'string' && this.moving(key) ? 1 : 0)
    this.nthRowStmt = db.prepare('SELECT seq FROM kv WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?')
    this.nthRecordStmt = db.prepare('SELECT seq FROM applied_requests WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?')
    this.rowsStmt = db.prepare(`SELECT key, value, content_type, version, seq, expires_at FROM kv
      WHERE seq > ? AND seq <= ? AND shardkv_moving(key) AND deleted = 0 ORDER BY seq`)
    this.recordsStmt = db.prepare(`SELECT ${APPLIED_COLUMNS} FROM applied_requests WHERE seq > ? AND seq <= ? AND shardkv_moving(key) ORDER BY seq`)
    this.countStmt = db.prepare('SELECT count(*) AS n FROM kv WHERE seq > ? AND seq <= ?')
    const window = db.transaction((after: number, limit: number) => this.readWindow(after, limit))
    this.read = (after, limit) => window.deferred(after, limit)
  }

  /**
   * At most `limit` rows and `limit` records past `after` (moving or not): when either
   * stream has more, the window ends at the `limit`-th entry of the shorter one, and the
   * other is cut there; otherwise it runs to the node's position.
   */
  window (after: number, limit: number, isMoving: (key: string) => boolean): MovingWindow {
    this.moving = isMoving
    try {
      return this.read(after, limit)
    } finally {
      this.moving = () => false
    }
  }

  /** Rows in (after, to], moving or not. */
  count (after: number, to: number): number {
    return this.countStmt.get(after, to)?.n ?? 0
  }

  private readWindow (after: number, limit: number): MovingWindow {
    const ends = [this.nthRowStmt.get(after, limit - 1)?.seq, this.nthRecordStmt.get(after, limit - 1)?.seq].filter((s): s is number => s !== undefined)
    const complete = ends.length === 0
    const to = complete ? Math.max(after, this.store.position()) : Math.min(...ends)
    const rows = this.rowsStmt.all(after, to).map((r) => ({ key: r.key, value: r.value, contentType: r.content_type, version: r.version, seq: r.seq, expiresAt: r.expires_at }))
    const requests = this.recordsStmt.all(after, to).map(appliedFromRow)
    return { rows, requests, to, complete, floor: this.store.applied.floor() }
  }
}
