import type Database from 'better-sqlite3'
import type { KvStore } from './store'
import type { AppliedRequest } from './applied-requests'
import { META } from './schema'
import { MigrationScan } from './migration-scan'

/**
 * The storage side of rebalancing, over a node's KvStore: installing cluster maps,
 * reading the rows that move away, importing rows without overwriting newer ones,
 * and purging rows the node no longer owns. The applied-request records of moving
 * keys move with them (a write retried at the new owner must be recognised there).
 * Ownership decisions come in as predicates; this module only moves rows.
 */

export interface MigratingRow {
  key: string
  value: Buffer
  contentType: string
  version: string
  deleted: boolean
  /** The row's expiry (ms since the epoch; null: never): it moves with the row. */
  expiresAt: number | null
}

/** What moves with a key: its row (live only in a scan), its records, the sender's request-id floor. */
export interface KeyTransfer {
  rows: MigratingRow[]
  requests: AppliedRequest[]
  floor: number
}

export interface ScanResult extends KeyTransfer {
  /** seq to pass as `after` for the next batch. */
  next: number
  /** Rows examined in this batch (moving or not). */
  scanned: number
  done: boolean
}

export interface InstalledMapRecord {
  epoch: number
  group: string
  /** This node's own URL in the map (tells it its role), when the installer said. */
  self?: string
  /** Where the coordinator listens (a primary asks it to change the in-sync set). */
  coordinator?: string
  /** The installing coordinator's leadership fence (src/registry/fence.ts; 0: none). */
  fence: number
  map: unknown
}

interface RawRow { key: string, value: Buffer, content_type: string, version: string, seq: number, deleted: number, expires_at: number | null }

export interface ImportResult { inserted: number, skipped: number, requests: number, maxSeq: number }

export class MigrationStore {
  private readonly db: Database.Database
  private readonly store: KvStore
  private readonly existsStmt: Database.Statement<[string], { seq: number }>
  private readonly reserveStmt: Database.Statement<[number], { value: number }>
  private readonly insertStmt: Database.Statement<[string, Buffer, string, string, number, number, number | null]>
  private readonly keysStmt: Database.Statement<[string, number], { key: string }>
  private readonly deleteStmt: Database.Statement<[string]>
  private readonly rowStmt: Database.Statement<[string], RawRow>
  private readonly scan: MigrationScan

  constructor (store: KvStore) {
    this.store = store
    this.db = store.database
    this.existsStmt = this.db.prepare('SELECT seq FROM kv WHERE key = ?')
    this.reserveStmt = this.db.prepare(`UPDATE meta SET value = value + ? WHERE name = '${META.seq}' RETURNING value`)
    this.insertStmt = this.db.prepare('INSERT INTO kv (key, value, content_type, version, seq, deleted, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
    this.keysStmt = this.db.prepare('SELECT key FROM kv WHERE key > ? ORDER BY key LIMIT ?')
    this.deleteStmt = this.db.prepare('DELETE FROM kv WHERE key = ?')
    this.rowStmt = this.db.prepare('SELECT key, value, content_type, version, seq, deleted, expires_at FROM kv WHERE key = ?')
    this.scan = new MigrationScan(this.db, store)
  }

  /**
   * Installs a map if it is not older than the installed one, and its installer's
   * leadership fence not older than the installed one's. Returns the epoch now installed
   * (the installed one when refused) and the fence that refused it, if one did. Runs as
   * an immediate transaction, so it serializes with writes and with other installs:
   * every write after it sees its epoch (and its fence).
   */
  installMap (record: InstalledMapRecord): { epoch: number, staleFence?: number } {
    return this.db.transaction(() => {
      const current = this.store.installedEpoch()
      const fence = this.installedMap()?.fence ?? 0
      if (record.fence < fence) return { epoch: current, staleFence: fence }
      if (record.epoch < current) return { epoch: current }
      this.store.writeMeta(META.map, JSON.stringify({ group: record.group, self: record.self, coordinator: record.coordinator, fence: record.fence, map: record.map }))
      this.store.writeMeta(META.epoch, record.epoch)
      return { epoch: record.epoch }
    }).immediate()
  }

  installedMap (): InstalledMapRecord | undefined {
    const raw = this.store.readMeta(META.map)
    if (typeof raw !== 'string') return undefined
    const parsed = JSON.parse(raw) as { group: string, self?: string, coordinator?: string, fence?: number, map: unknown }
    return {
      epoch: this.store.installedEpoch(),
      group: parsed.group,
      fence: parsed.fence ?? 0,
      ...(parsed.self !== undefined ? { self: parsed.self } : {}),
      ...(parsed.coordinator !== undefined ? { coordinator: parsed.coordinator } : {}),
      map: parsed.map
    }
  }

  /**
   * The next batch of live rows (no tombstones) that `isMoving` selects, in seq order,
   * with the applied-request records of moving keys in the same stretch of the log
   * (tombstoned keys included: a retried DELETE must be recognised at the new owner).
   */
  scanMoving (after: number, limit: number, isMoving: (key: string) => boolean, maxBytes: number): ScanResult {
    const window = this.scan.window(after, limit, isMoving)
    const rows: MigratingRow[] = []
    let next = window.to
    let bytes = 0
    let cut = false
    for (const [i, r] of window.rows.entries()) {
      rows.push({ key: r.key, value: r.value, contentType: r.contentType, version: r.version, deleted: false, expiresAt: r.expiresAt })
      bytes += r.value.length + r.key.length
      if (bytes >= maxBytes && i < window.rows.length - 1) {
        next = r.seq
        cut = true
        break
      }
    }
    const requests = cut ? window.requests.filter((q) => q.seq <= next) : window.requests
    // A statistic (rows examined, moving or not), counted outside the window's snapshot.
    const scanned = this.scan.count(after, next)
    return { rows, requests, floor: window.floor, next, scanned, done: window.complete && !cut }
  }

  /**
   * Inserts rows whose key has no row here (not even a tombstone): a key written or
   * deleted on this node since the fence is newer and wins. Each inserted row gets a
   * fresh local seq, so it reaches this node's replicas like any write; so does each
   * applied-request record not known here yet. The request-id floor rises to the sender's.
   * The seqs are taken from the counter in one step for the whole batch (contiguous, in
   * the order rows then records arrive): a counter update per row was a third of the
   * import's cost, and inside the one transaction nobody else can take a seq in between.
   */
  importIfAbsent (transfer: KeyTransfer, accept: (key: string) => void): ImportResult {
    return this.db.transaction((): ImportResult => {
      const keys = new Set<string>()
      const rows = transfer.rows.filter((r) => {
        accept(r.key)
        // A key twice in one batch (a hostile or buggy sender): the first copy wins, as it would have one by one.
        if (keys.has(r.key) || this.existsStmt.get(r.key) !== undefined) return false
        keys.add(r.key)
        return true
      })
      const ids = new Set<string>()
      const requests = transfer.requests.filter((q) => {
        accept(q.key)
        if (ids.has(q.id) || this.store.applied.has(q.id)) return false
        ids.add(q.id)
        return true
      })
      const count = rows.length + requests.length
      const maxSeq = count === 0 ? 0 : this.reserveSeqs(count)
      let seq = maxSeq - count
      const at = Date.now()
      for (const r of rows) {
        seq++
        this.insertStmt.run(r.key, r.value, r.contentType, r.version, seq, r.deleted ? 1 : 0, r.expiresAt)
        // Watchers of this group see the key arrive (the same version they may have seen at the source).
        this.store.feed.record({ seq, key: r.key, version: r.version, contentType: r.contentType, deleted: r.deleted, reason: 'moved', at })
      }
      for (const q of requests) this.store.applied.insertShipped({ ...q, seq: ++seq })
      this.store.applied.raiseFloor(transfer.floor)
      return { inserted: rows.length, skipped: transfer.rows.length - rows.length, requests: requests.length, maxSeq }
    }).immediate()
  }

  /** Takes `count` seqs from the node's counter; returns the last of them. Inside a transaction. */
  private reserveSeqs (count: number): number {
    const last = this.reserveStmt.get(count)?.value
    if (last === undefined) throw new Error('the seq counter row is missing')
    return last
  }

  /** The whole row of a key, tombstone included (copy on touch), with its seq. */
  row (key: string): (MigratingRow & { seq: number }) | undefined {
    const r = this.rowStmt.get(key)
    if (r === undefined) return undefined
    return { key: r.key, value: r.value, contentType: r.content_type, version: r.version, deleted: r.deleted === 1, seq: r.seq, expiresAt: r.expires_at }
  }

  /**
   * What copy on touch moves for one key: its row (tombstone included), the record of
   * the request id the touching write carries (so its retry is recognised at the new
   * owner), and the floor.
   */
  keyTransfer (key: string, requestId: string | undefined): KeyTransfer {
    return this.db.transaction((): KeyTransfer => {
      const row = this.row(key)
      const requests = requestId === undefined ? [] : this.store.applied.ofRequest(requestId, key)
      return { rows: row === undefined ? [] : [row], requests, floor: this.store.applied.floor() }
    }).deferred()
  }

  /** Deletes (physically) the rows `isForeign` selects among the next `limit` keys after `afterKey`. */
  purgeForeign (afterKey: string, limit: number, isForeign: (key: string) => boolean): { deleted: number, next: string, done: boolean } {
    return this.db.transaction(() => {
      const keys = this.keysStmt.all(afterKey, limit)
      let deleted = 0
      for (const { key } of keys) {
        if (isForeign(key)) {
          this.deleteStmt.run(key)
          deleted++
        }
      }
      const last = keys[keys.length - 1]
      return { deleted, next: last === undefined ? afterKey : last.key, done: keys.length < limit }
    }).immediate()
  }
}
