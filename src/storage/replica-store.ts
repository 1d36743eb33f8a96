import type Database from 'better-sqlite3'
import type { KvStore, ChangeRow } from './store'
import type { AppliedRequest } from './applied-requests'
import type { FeedEntry } from './feed'
import { META } from './schema'
import type { Handoff } from '../replication/policy'

/**
 * The storage side of replication. A replica holds the primary's rows exactly,
 * seq included, so its position is the primary's seq it has reached and a promoted
 * replica continues the same sequence. It holds the primary's applied-request records
 * the same way, so a retry that reaches it after a promotion is recognised.
 */

export interface Shipment {
  rows: readonly ChangeRow[]
  requests: readonly AppliedRequest[]
  /** The position the shipment brings the replica to. */
  to: number
  /** The primary's request-id floor. */
  floor: number
  /** The primary's change-feed entries in the shipment's range (none from a sender that keeps no feed). */
  feed: readonly FeedEntry[]
  /** The primary's change-feed floor. */
  feedFloor: number
}
export class ReplicaStore {
  private readonly db: Database.Database
  private readonly clearSeqStmt: Database.Statement<[number, string]>
  private readonly upsertStmt: Database.Statement<[string, Buffer, string, string, number, number, number | null]>

  constructor (private readonly store: KvStore) {
    this.db = store.database
    this.clearSeqStmt = this.db.prepare('DELETE FROM kv WHERE seq = ? AND key <> ?')
    this.upsertStmt = this.db.prepare(`
      INSERT INTO kv (key, value, content_type, version, seq, deleted, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, content_type = excluded.content_type,
        version = excluded.version, seq = excluded.seq, deleted = excluded.deleted, expires_at = excluded.expires_at`)
  }

  position (): number {
    return this.store.position()
  }

  /** Applies a contiguous shipment in one durable transaction; the position becomes `to`. */
  apply (shipment: Shipment): number {
    return this.db.transaction(() => this.applyOne(shipment)).immediate()
  }

  /**
   * Applies shipments that follow each other, the first from `from`, in ONE durable
   * transaction (one fsync: pipelined shipments, shards/apply-queue.ts). Checks inside
   * the transaction that the replica stands at `from`; false (nothing applied) when not.
   */
  applyAll (from: number, shipments: readonly Shipment[]): boolean {
    return this.db.transaction(() => {
      if (this.store.position() !== from) return false
      for (const s of shipments) this.applyOne(s)
      return true
    }).immediate()
  }

  private applyOne (shipment: Shipment): number {
    const { rows, requests, to } = shipment
    for (const r of rows) {
      this.clearSeqStmt.run(r.seq, r.key)
      this.upsertStmt.run(r.key, r.value, r.contentType, r.version, r.seq, r.deleted ? 1 : 0, r.expiresAt)
    }
    for (const r of requests) this.store.applied.insertShipped(r)
    this.store.applied.raiseFloor(shipment.floor)
    for (const e of shipment.feed) this.store.feed.record(e)
    this.store.feed.raiseFloor(shipment.feedFloor)
    this.store.writeMeta(META.seq, to)
    return to
  }

  /** Forgets everything for a full resync from a primary of `term`. */
  wipe (term: number): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM kv').run()
      this.store.applied.clear()
      this.store.feed.clear()
      this.store.writeMeta(META.seq, 0)
      this.store.writeMeta(META.term, term)
      this.store.writeMeta(META.handoff, null)
    }).immediate()
  }

  /**
   * Records a planned switchover's handoff, in one transaction with the check that the
   * log stands at its position (writes, fenced by then, cannot move it afterwards).
   * False when it does not.
   */
  recordHandoff (handoff: Handoff): boolean {
    return this.db.transaction(() => {
      if (this.store.position() !== handoff.position) return false
      this.store.writeMeta(META.handoff, JSON.stringify(handoff))
      return true
    }).immediate()
  }

  handoff (): Handoff | undefined {
    const raw = this.store.readMeta(META.handoff)
    if (typeof raw !== 'string') return undefined
    try {
      return JSON.parse(raw) as Handoff
    } catch {
      return undefined
    }
  }

  /** Keeps the data for the handoff's term (see keepsDataAfterHandoff): the handoff is used up. */
  takeHandoff (term: number): void {
    this.db.transaction(() => {
      if (this.store.currentTerm() < term) this.store.writeMeta(META.term, term)
      this.store.writeMeta(META.handoff, null)
    }).immediate()
  }

  /** A promoted node writes its new versions under the group's new term. */
  adoptTerm (term: number): void {
    this.db.transaction(() => {
      if (this.store.currentTerm() < term) this.store.writeMeta(META.term, term)
    }).immediate()
  }

  /**
   * A renewal (a later end) is written without an fsync: a crash that loses it only ends
   * the lease sooner (writeMetaUnsynced). A revocation or any earlier end is synced, and
   * with it every renewal before it: a node must not come back holding a lease it gave up.
   */
  setLease (until: number): void {
    if (until > this.store.fence().leaseUntil) this.store.writeMetaUnsynced(META.leaseUntil, until)
    else this.store.writeMeta(META.leaseUntil, until)
  }
}
