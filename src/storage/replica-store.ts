import type Database from 'better-sqlite3'
import type { KvStore, ChangeRow } from './store'
import { META } from './schema'

/**
 * The storage side of replication. A replica holds the primary's rows exactly,
 * seq included, so its position is the primary's seq it has reached and a promoted
 * replica continues the same sequence.
 */
export class ReplicaStore {
  private readonly db: Database.Database
  private readonly clearSeqStmt: Database.Statement<[number, string]>
  private readonly upsertStmt: Database.Statement<[string, Buffer, string, string, number, number, string | null]>

  constructor (private readonly store: KvStore) {
    this.db = store.database
    this.clearSeqStmt = this.db.prepare('DELETE FROM kv WHERE seq = ? AND key <> ?')
    this.upsertStmt = this.db.prepare(`
      INSERT INTO kv (key, value, content_type, version, seq, deleted, origin) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, content_type = excluded.content_type,
        version = excluded.version, seq = excluded.seq, deleted = excluded.deleted, origin = excluded.origin`)
  }

  position (): number {
    return this.store.position()
  }

  /** Applies a contiguous shipment in one durable transaction; the position becomes `to`. */
  apply (rows: readonly ChangeRow[], to: number): number {
    return this.db.transaction(() => {
      for (const r of rows) {
        this.clearSeqStmt.run(r.seq, r.key)
        this.upsertStmt.run(r.key, r.value, r.contentType, r.version, r.seq, r.deleted ? 1 : 0, r.origin ?? null)
      }
      this.store.writeMeta(META.seq, to)
      return to
    }).immediate()
  }

  /** Forgets everything for a full resync from a primary of `term`. */
  wipe (term: number): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM kv').run()
      this.store.writeMeta(META.seq, 0)
      this.store.writeMeta(META.term, term)
    }).immediate()
  }

  /** A promoted node writes its new versions under the group's new term. */
  adoptTerm (term: number): void {
    this.db.transaction(() => {
      if (this.store.currentTerm() < term) this.store.writeMeta(META.term, term)
    }).immediate()
  }

  setLease (until: number): void {
    this.store.writeMeta(META.leaseUntil, until)
  }
}
