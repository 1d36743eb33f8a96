import type Database from 'better-sqlite3'
import type { KvStore } from './store'
import { META } from './schema'

/**
 * The storage side of rebalancing, over a node's KvStore: installing cluster maps,
 * reading the rows that move away, importing rows without overwriting newer ones,
 * and purging rows the node no longer owns. Ownership decisions come in as
 * predicates; this module only moves rows.
 */

export interface MigratingRow {
  key: string
  value: Buffer
  contentType: string
  version: string
  deleted: boolean
}

export interface ScanResult {
  rows: MigratingRow[]
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
  map: unknown
}

interface RawRow { key: string, value: Buffer, content_type: string, version: string, seq: number, deleted: number }

export class MigrationStore {
  private readonly db: Database.Database
  private readonly store: KvStore
  private readonly scanStmt: Database.Statement<[number, number], RawRow>
  private readonly existsStmt: Database.Statement<[string], { seq: number }>
  private readonly bumpStmt: Database.Statement<[], { value: number }>
  private readonly insertStmt: Database.Statement<[string, Buffer, string, string, number, number]>
  private readonly keysStmt: Database.Statement<[string, number], { key: string }>
  private readonly deleteStmt: Database.Statement<[string]>
  private readonly rowStmt: Database.Statement<[string], RawRow>

  constructor (store: KvStore) {
    this.store = store
    this.db = store.database
    this.scanStmt = this.db.prepare('SELECT key, value, content_type, version, seq, deleted FROM kv WHERE seq > ? ORDER BY seq LIMIT ?')
    this.existsStmt = this.db.prepare('SELECT seq FROM kv WHERE key = ?')
    this.bumpStmt = this.db.prepare(`UPDATE meta SET value = value + 1 WHERE name = '${META.seq}' RETURNING value`)
    this.insertStmt = this.db.prepare('INSERT INTO kv (key, value, content_type, version, seq, deleted, origin) VALUES (?, ?, ?, ?, ?, ?, NULL)')
    this.keysStmt = this.db.prepare('SELECT key FROM kv WHERE key > ? ORDER BY key LIMIT ?')
    this.deleteStmt = this.db.prepare('DELETE FROM kv WHERE key = ?')
    this.rowStmt = this.db.prepare('SELECT key, value, content_type, version, seq, deleted FROM kv WHERE key = ?')
  }

  /**
   * Installs a map if it is not older than the installed one. Returns the epoch now
   * installed. Runs as an immediate transaction, so it serializes with writes: every
   * write after it sees its epoch (and its fence).
   */
  installMap (record: InstalledMapRecord): number {
    return this.db.transaction(() => {
      const current = this.store.installedEpoch()
      if (record.epoch < current) return current
      this.store.writeMeta(META.map, JSON.stringify({ group: record.group, self: record.self, coordinator: record.coordinator, map: record.map }))
      this.store.writeMeta(META.epoch, record.epoch)
      return record.epoch
    }).immediate()
  }

  installedMap (): InstalledMapRecord | undefined {
    const raw = this.store.readMeta(META.map)
    if (typeof raw !== 'string') return undefined
    const parsed = JSON.parse(raw) as { group: string, self?: string, coordinator?: string, map: unknown }
    return {
      epoch: this.store.installedEpoch(),
      group: parsed.group,
      ...(parsed.self !== undefined ? { self: parsed.self } : {}),
      ...(parsed.coordinator !== undefined ? { coordinator: parsed.coordinator } : {}),
      map: parsed.map
    }
  }

  /** The next batch of live rows (no tombstones) that `isMoving` selects, in seq order. */
  scanMoving (after: number, limit: number, isMoving: (key: string) => boolean, maxBytes: number): ScanResult {
    const raw = this.scanStmt.all(after, limit)
    const rows: MigratingRow[] = []
    let next = after
    let bytes = 0
    let scanned = 0
    for (const r of raw) {
      scanned++
      next = r.seq
      if (r.deleted === 0 && isMoving(r.key)) {
        rows.push({ key: r.key, value: r.value, contentType: r.content_type, version: r.version, deleted: false })
        bytes += r.value.length + r.key.length
        if (bytes >= maxBytes) break
      }
    }
    return { rows, next, scanned, done: raw.length < limit && scanned === raw.length }
  }

  /**
   * Inserts rows whose key has no row here (not even a tombstone): a key written or
   * deleted on this node since the fence is newer and wins. Each inserted row gets a
   * fresh local seq, so it reaches this node's replicas like any write.
   */
  importIfAbsent (rows: readonly MigratingRow[], accept: (key: string) => void): { inserted: number, skipped: number, maxSeq: number } {
    return this.db.transaction(() => {
      let inserted = 0
      let maxSeq = 0
      for (const r of rows) {
        accept(r.key)
        if (this.existsStmt.get(r.key) !== undefined) continue
        const seq = this.bumpStmt.get()?.value
        if (seq === undefined) throw new Error('the seq counter row is missing')
        this.insertStmt.run(r.key, r.value, r.contentType, r.version, seq, r.deleted ? 1 : 0)
        inserted++
        maxSeq = seq
      }
      return { inserted, skipped: rows.length - inserted, maxSeq }
    }).immediate()
  }

  /** The whole row of a key, tombstone included (copy on touch), with its seq. */
  row (key: string): (MigratingRow & { seq: number }) | undefined {
    const r = this.rowStmt.get(key)
    if (r === undefined) return undefined
    return { key: r.key, value: r.value, contentType: r.content_type, version: r.version, deleted: r.deleted === 1, seq: r.seq }
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
