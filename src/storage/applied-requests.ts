import type Database from 'better-sqlite3'
import { META } from './schema'
import { ShardKvError } from '../protocol/errors'
import type { RequestStamp } from '../protocol/request-id'
import type { WireAppliedRequest } from '../protocol/wire'

/**
 * The record of applied request ids: exactly-once writes across retries, failovers and
 * rebalances.
 *
 * Every write that carries a request id inserts one row here in its own transaction,
 * stamped with the write's seq. A retry of that id — by a router or a client, on this
 * node or on the node that took over the key — finds the row and is answered with the
 * first result, however many writes to the key came after it. (The record used to live
 * in the key's row, and was lost as soon as a newer write replaced the row: a retry
 * that arrived after that was applied again.)
 *
 * The rows travel with the data: ordered by seq they are part of the change log that
 * replication ships (a replica holds every record up to its position, so a promoted
 * replica knows every id its old primary acknowledged); migration carries the records
 * of moving keys to their new owner, and copy on touch the record of the write it is for.
 *
 * They are kept for a window (`--request-id-window`, longer than any retry budget by
 * orders of magnitude) and at most `--request-id-max` of them. Expiry moves the node's
 * *floor*: records of ids issued before it may be gone, so such an id is refused
 * (`request_id_expired`) rather than applied blind. A floor only rises; replication,
 * migration and copy on touch raise the receiver's to the sender's, so no node accepts
 * an id that another node has already forgotten applying.
 */

/** One record (the wire shape is the stored one; src/protocol/wire.ts documents its fields). */
export type AppliedRequest = WireAppliedRequest

export interface RawApplied { id: string, key: string, issued: number, fingerprint: string, seq: number, version: string, existed: number }

export interface SweepResult { deleted: number, floor: number }

const SWEEP_BATCH = 5000

/** Ids may come from a client whose clock runs ahead, but not by more than this. */
const MAX_ISSUE_AHEAD_MS = 10 * 60_000

/** A record's columns, in RawApplied's order. */
export const APPLIED_COLUMNS = 'id, key, issued, fingerprint, seq, version, existed'

/** A record as SELECTed (existed is an integer there). */
export function appliedFromRow (r: RawApplied): AppliedRequest {
  return { id: r.id, key: r.key, issued: r.issued, fingerprint: r.fingerprint, seq: r.seq, version: r.version, existed: r.existed === 1 }
}

export class AppliedRequests {
  private readonly lookupStmt: Database.Statement<[string], RawApplied>
  private readonly insertStmt: Database.Statement<[string, string, number, string, number, string, number]>
  private readonly insertIgnoreStmt: Database.Statement<[string, string, number, string, number, string, number]>
  private readonly afterStmt: Database.Statement<[number, number], RawApplied>
  private readonly floorStmt: Database.Statement<[], { value: number }>
  private readonly setFloorStmt: Database.Statement<[number]>
  private readonly sweepStmt: Database.Statement<[number, number]>
  private readonly seqSpanStmt: Database.Statement<[], { lo: number | null, hi: number | null }>
  private readonly capStmt: Database.Statement<[number], { seq: number }>
  private readonly capIssuedStmt: Database.Statement<[number], { issued: number | null }>
  private readonly trimStmt: Database.Statement<[number, number]>

  constructor (private readonly db: Database.Database) {
    const cols = APPLIED_COLUMNS
    this.lookupStmt = db.prepare(`SELECT ${cols} FROM applied_requests WHERE id = ?`)
    this.insertStmt = db.prepare(`INSERT INTO applied_requests (${cols}) VALUES (?, ?, ?, ?, ?, ?, ?)`)
    this.insertIgnoreStmt = db.prepare(`INSERT OR IGNORE INTO applied_requests (${cols}) VALUES (?, ?, ?, ?, ?, ?, ?)`)
    this.afterStmt = db.prepare(`SELECT ${cols} FROM applied_requests WHERE seq > ? ORDER BY seq LIMIT ?`)
    this.floorStmt = db.prepare(`SELECT value FROM meta WHERE name = '${META.requestFloor}'`)
    this.setFloorStmt = db.prepare(`INSERT INTO meta (name, value) VALUES ('${META.requestFloor}', ?)
      ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)`)
    this.sweepStmt = db.prepare('DELETE FROM applied_requests WHERE id IN (SELECT id FROM applied_requests WHERE issued < ? ORDER BY seq LIMIT ?)')
    this.seqSpanStmt = db.prepare('SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM applied_requests')
    this.capStmt = db.prepare('SELECT seq FROM applied_requests ORDER BY seq DESC LIMIT 1 OFFSET ?')
    this.capIssuedStmt = db.prepare('SELECT MAX(issued) AS issued FROM applied_requests WHERE seq <= ?')
    this.trimStmt = db.prepare('DELETE FROM applied_requests WHERE id IN (SELECT id FROM applied_requests WHERE seq <= ? ORDER BY seq LIMIT ?)')
  }

  /**
   * Inside a write's transaction, before it applies: the first result of this id when
   * it was applied already (the caller answers with it and writes nothing); undefined
   * when the write is new. Throws when the id was applied to another operation, or when
   * it is too old (or too far ahead) to be told apart from one that was.
   */
  check (stamp: RequestStamp, key: string, now: number): AppliedRequest | undefined {
    const found = this.lookupStmt.get(stamp.id)
    if (found !== undefined) {
      if (found.fingerprint !== stamp.fingerprint || found.key !== key) {
        throw new ShardKvError('idempotency_key_reused', 'this request id was already used for another operation (method, key, value or preconditions differ); send a new id')
      }
      return appliedFromRow(found)
    }
    const floor = this.floor()
    if (stamp.issued < floor) {
      throw new ShardKvError('request_id_expired', `this request id was issued before ${new Date(floor).toISOString()}, the oldest this node still recognises: whether an earlier attempt with it applied is unknown. Read the key, then write with a new id.`, { floor })
    }
    if (stamp.issued > now + MAX_ISSUE_AHEAD_MS) {
      throw new ShardKvError('invalid_header', `this request id was issued ${Math.round((stamp.issued - now) / 1000)} s in the future: check the sender's clock`)
    }
    return undefined
  }

  /** Records a write just applied (same transaction). */
  record (stamp: RequestStamp, key: string, seq: number, version: string, existed: boolean): void {
    this.insertStmt.run(stamp.id, key, stamp.issued, stamp.fingerprint, seq, version, existed ? 1 : 0)
  }

  /** Records with seq > after, in seq order (the change log's second stream). */
  after (after: number, limit: number): AppliedRequest[] {
    return this.afterStmt.all(after, limit).map(appliedFromRow)
  }

  /**
   * The record of one request id, when it wrote `key` (copy on touch carries the record
   * of the write it is for; the others of the key move with the migration scan). No
   * index by key: it would cost every write a random b-tree insert.
   */
  ofRequest (id: string, key: string): AppliedRequest[] {
    const found = this.lookupStmt.get(id)
    return found !== undefined && found.key === key ? [appliedFromRow(found)] : []
  }

  /** A replica stores its primary's records as they are (seq included); true when new. */
  insertShipped (r: AppliedRequest): boolean {
    return this.insertIgnoreStmt.run(r.id, r.key, r.issued, r.fingerprint, r.seq, r.version, r.existed ? 1 : 0).changes > 0
  }

  has (id: string): boolean {
    return this.lookupStmt.get(id) !== undefined
  }

  floor (): number {
    return this.floorStmt.get()?.value ?? 0
  }

  /** Raises the floor (never lowers it). */
  raiseFloor (floor: number): void {
    if (floor > 0) this.setFloorStmt.run(floor)
  }

  /**
   * Forgets records older than the window, and the oldest beyond `maxRecords`, raising
   * the floor first so that no forgotten id can be applied again. Bounded work per call
   * (the caller runs it periodically, each call in its own short transaction).
   */
  sweep (now: number, windowMs: number, maxRecords: number): SweepResult {
    return this.db.transaction((): SweepResult => {
      const cutoff = now - windowMs
      this.raiseFloor(cutoff)
      let deleted = this.sweepStmt.run(cutoff, SWEEP_BATCH).changes
      // MAX(seq) - MIN(seq) bounds the count from above: count exactly only past the cap.
      const span = this.seqSpanStmt.get()
      if (span?.lo != null && span.hi != null && span.hi - span.lo + 1 > maxRecords) {
        const over = this.capStmt.get(maxRecords)
        if (over !== undefined) {
          const issued = this.capIssuedStmt.get(over.seq)?.issued
          if (issued != null) this.raiseFloor(issued + 1)
          deleted += this.trimStmt.run(over.seq, SWEEP_BATCH).changes
        }
      }
      return { deleted, floor: this.floor() }
    }).immediate()
  }

  clear (): void {
    this.db.prepare('DELETE FROM applied_requests').run()
  }
}
