import Database from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { migrate, META } from './schema'
import { writeAllowed, type WriteConditions } from '../protocol/preconditions'
import type { RequestStamp } from '../protocol/request-id'
import { AppliedRequests } from './applied-requests'
import { expiryOf, isExpired } from '../protocol/ttl'
import { ChangeFeed } from './feed'
import type { NodeStats } from '../protocol/node-answers'
import { readLogWindow, type LogWindow } from './log-window'

export { byteBoundedEnd, type LogWindow } from './log-window'

export type SynchronousLevel = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA'

export interface StoreOptions {
  path: string
  synchronous?: SynchronousLevel
  busyTimeoutMs?: number
  /** Node id to use when the database is new; must match when it is not. */
  nodeId?: string
  readonly?: boolean
}

export interface StoredValue {
  value: Buffer
  contentType: string
  version: string
  seq: number
  /** When it expires (ms since the epoch; null: never). */
  expiresAt: number | null
}

/** A row as replication and migration see it: tombstones included. */
export interface ChangeRow {
  key: string
  value: Buffer
  contentType: string
  version: string
  seq: number
  deleted: boolean
  /** The row's expiry; on a tombstone, the expiry that deleted it (null: deleted by a client). */
  expiresAt: number | null
}

export type WriteOutcome =
  | { ok: true, version: string, seq: number, replayed: boolean, existed: boolean }
  | { ok: false, reason: 'precondition_failed', current: string | undefined }

/** One operation of a multi-operation transaction (`applyOps`). */
export type StoreOp =
  | { op: 'put', key: string, value: Buffer, contentType: string, conditions?: WriteConditions, request?: RequestStamp | undefined, ttlMs?: number }
  | { op: 'delete', key: string, conditions?: WriteConditions, request?: RequestStamp | undefined }
  | { op: 'get', key: string }
  /** The sweeper's delete of an expired row: only while the row is still `version` and expired. */
  | { op: 'expire', key: string, version: string }

/**
 * What became of one op of `applyOps`: a write's outcome, a read (with the key's
 * tombstone seq when it was deleted here), or a write the guard or SQLite refused
 * (rolled back alone, to its savepoint; the others still commit).
 */
export type OpOutcome =
  | { kind: 'write', outcome: WriteOutcome }
  | { kind: 'read', found: StoredValue | undefined, tombstoneSeq: number | undefined }
  | { kind: 'refused', error: unknown }

interface MetaRow { version: string, seq: number, deleted: number, expires_at: number | null }
interface ValueRow { value: Buffer, content_type: string, version: string, seq: number, expires_at: number | null }
interface ReadRow { value: Buffer | null, content_type: string, version: string, seq: number, deleted: number, expires_at: number | null }
interface RawChangeRow { key: string, value: Buffer, content_type: string, version: string, seq: number, deleted: number, expires_at: number | null }

/** One write as the write transaction applies it. */
interface WriteSpec {
  key: string
  value: Buffer
  contentType: string
  cond: WriteConditions
  request: RequestStamp | undefined
  deleted: 0 | 1
  ttlMs?: number | undefined
  /** Set by the sweeper: tombstone the row only if it is still this version, and expired. */
  expireVersion?: string
}

/**
 * Called inside every write transaction with the installed epoch and the primary's
 * lease read in that same transaction; throws to refuse the write. This is the fence: once a map install
 * commits, no write to a key the node gave away can commit after it.
 */
export type WriteGuard = (key: string, installedEpoch: number, leaseUntil: number) => void

export class StoreError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = 'StoreError'
    this.code = code
  }
}

const EMPTY = Buffer.alloc(0)

/**
 * One shard node's SQLite partition. Every worker process of the node opens its own
 * KvStore on the same file (WAL mode): reads run concurrently, writes serialize on
 * SQLite's write lock (BEGIN IMMEDIATE, waiting up to busyTimeoutMs).
 *
 * A version is `<nodeId>.<term>.<seq>` (term and seq in base 36): unique across
 * nodes, and carried unchanged by replication and migration so an ETag keeps
 * meaning the same bytes wherever the key goes.
 */
export class KvStore {
  readonly path: string
  readonly nodeId: string
  private readonly db: Database.Database
  private readonly getStmt: Database.Statement<[string], ValueRow>
  private readonly metaStmt: Database.Statement<[string], MetaRow>
  private readonly bumpSeqStmt: Database.Statement<[], { value: number }>
  private readonly upsertStmt: Database.Statement<[string, Buffer, string, string, number, number, number | null]>
  private readonly readMetaStmt: Database.Statement<[string], { value: unknown }>
  private readonly writeMetaStmt: Database.Statement<[string, unknown]>
  private readonly changesStmt: Database.Statement<[number, number], RawChangeRow>
  private readonly readRowStmt: Database.Statement<[string], ReadRow>
  private readonly putTxn: (spec: WriteSpec) => WriteOutcome
  private readonly writeOne: (spec: WriteSpec) => WriteOutcome
  private readonly windowTxn: (after: number, limit: number, maxBytes: number) => LogWindow
  /** The record of applied request ids (exactly-once writes). */
  readonly applied: AppliedRequests
  /** Every change, for watchers (the kv table keeps only each key's last). */
  readonly feed: ChangeFeed
  private readonly opsTxn: Database.Transaction<(ops: readonly StoreOp[]) => OpOutcome[]>
  private term: number
  private guard: WriteGuard | undefined
  private readonly epochStmt: Database.Statement<[], { value: number }>
  private readonly termStmt: Database.Statement<[], { value: number }>
  private readonly fenceStmt: Database.Statement<[], { epoch: number | null, lease: number | null }>
  /** PRAGMA synchronous = OFF, and back to the configured level: for `writeMetaUnsynced`. */
  private readonly unsyncedStmts: { off: Database.Statement, restore: Database.Statement } | undefined

  constructor (options: StoreOptions) {
    this.path = options.path
    if (options.readonly !== true) mkdirSync(dirname(options.path), { recursive: true })
    this.db = new Database(options.path, { readonly: options.readonly === true })
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
    if (options.readonly !== true) {
      this.db.pragma('journal_mode = WAL')
      migrate(this.db)
    }
    const synchronous = options.synchronous ?? 'FULL'
    this.db.pragma(`synchronous = ${synchronous}`)
    this.unsyncedStmts = options.readonly === true
      ? undefined
      : { off: this.db.prepare('PRAGMA synchronous = OFF'), restore: this.db.prepare(`PRAGMA synchronous = ${synchronous}`) }

    this.readMetaStmt = this.db.prepare('SELECT value FROM meta WHERE name = ?')
    this.writeMetaStmt = this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value')
    this.nodeId = this.initIdentity(options.nodeId, options.readonly === true)
    this.term = Number(this.readMeta(META.term) ?? 1)

    this.getStmt = this.db.prepare('SELECT value, content_type, version, seq, expires_at FROM kv WHERE key = ? AND deleted = 0')
    this.metaStmt = this.db.prepare('SELECT version, seq, deleted, expires_at FROM kv WHERE key = ?')
    this.readRowStmt = this.db.prepare('SELECT value, content_type, version, seq, deleted, expires_at FROM kv WHERE key = ?')
    this.bumpSeqStmt = this.db.prepare(`UPDATE meta SET value = value + 1 WHERE name = '${META.seq}' RETURNING value`)
    this.upsertStmt = this.db.prepare(`
      INSERT INTO kv (key, value, content_type, version, seq, deleted, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, content_type = excluded.content_type,
        version = excluded.version, seq = excluded.seq, deleted = excluded.deleted, expires_at = excluded.expires_at`)
    this.changesStmt = this.db.prepare('SELECT key, value, content_type, version, seq, deleted, expires_at FROM kv WHERE seq > ? ORDER BY seq LIMIT ?')
    this.applied = new AppliedRequests(this.db)
    this.feed = new ChangeFeed(this.db)

    this.epochStmt = this.db.prepare(`SELECT value FROM meta WHERE name = '${META.epoch}'`)
    this.termStmt = this.db.prepare(`SELECT value FROM meta WHERE name = '${META.term}'`)
    this.fenceStmt = this.db.prepare(`SELECT (SELECT value FROM meta WHERE name = '${META.epoch}') AS epoch, (SELECT value FROM meta WHERE name = '${META.leaseUntil}') AS lease`)
    const write = this.db.transaction((spec: WriteSpec): WriteOutcome => {
      const { key, request } = spec
      if (this.guard !== undefined) {
        const fence = this.fenceStmt.get()
        this.guard(key, fence?.epoch ?? 0, fence?.lease ?? 0)
      }
      // The one clock reading of this write: what expired rows it sees, and when its own value expires.
      const now = Date.now()
      // A retried request whose first attempt committed (here, or on the node this key or
      // group came from): answer as the first did, and change nothing.
      const first = request === undefined ? undefined : this.applied.check(request, key, now)
      if (first !== undefined) return { ok: true, version: first.version, seq: first.seq, replayed: true, existed: first.existed }
      const row = this.metaStmt.get(key)
      const live = row !== undefined && row.deleted === 0
      // An expired value is no value: If-Match cannot match it, If-None-Match: * passes.
      const current = live && !isExpired(row.expires_at, now) ? row.version : undefined
      let expiresAt = expiryOf(now, spec.ttlMs)
      if (spec.expireVersion !== undefined) {
        if (!live || row.version !== spec.expireVersion || current !== undefined) return { ok: false, reason: 'precondition_failed', current }
        expiresAt = row.expires_at
      } else if (!writeAllowed(spec.cond, current)) {
        return { ok: false, reason: 'precondition_failed', current }
      }
      const bumped = this.bumpSeqStmt.get()
      if (bumped === undefined) throw new StoreError('ERR_STORE_CORRUPT', 'the seq counter row is missing')
      const seq = bumped.value
      // The term is read here, not cached: a promotion changes it under running workers.
      const term = this.termStmt.get()?.value ?? 1
      const version = `${this.nodeId}.${term.toString(36)}.${seq.toString(36)}`
      this.upsertStmt.run(key, spec.value, spec.contentType, version, seq, spec.deleted, expiresAt)
      this.feed.record({ seq, key, version, contentType: spec.contentType, deleted: spec.deleted === 1, reason: spec.expireVersion !== undefined ? 'expired' : null, at: now })
      if (request !== undefined) this.applied.record(request, key, seq, version, current !== undefined)
      return { ok: true, version, seq, replayed: false, existed: current !== undefined }
    })
    this.putTxn = (spec) => write.immediate(spec)
    // Called inside opsTxn, the same function runs as a SAVEPOINT: a write the guard
    // refuses rolls back alone and the rest of the transaction goes on.
    this.writeOne = write
    this.opsTxn = this.db.transaction((ops: readonly StoreOp[]): OpOutcome[] => ops.map((op) => this.applyOne(op)))
    const window = this.db.transaction((after: number, limit: number, maxBytes: number): LogWindow => readLogWindow(this, after, limit, maxBytes))
    this.windowTxn = (after, limit, maxBytes) => window.deferred(after, limit, maxBytes)
  }

  private applyOne (op: StoreOp): OpOutcome {
    if (op.op === 'get') {
      const row = this.readRowStmt.get(op.key)
      if (row === undefined) return { kind: 'read', found: undefined, tombstoneSeq: undefined }
      // An expired row answers like a tombstone: this node's copy is the newest, absent is final.
      if (row.deleted === 1 || isExpired(row.expires_at, Date.now())) return { kind: 'read', found: undefined, tombstoneSeq: row.seq }
      return { kind: 'read', found: { value: row.value ?? EMPTY, contentType: row.content_type, version: row.version, seq: row.seq, expiresAt: row.expires_at }, tombstoneSeq: undefined }
    }
    try {
      return { kind: 'write', outcome: this.writeOne(writeSpecOf(op)) }
    } catch (err) {
      // Some SQLite errors abort the whole transaction, not just the savepoint: then
      // nothing of it can commit, and every op must fail with it.
      if (!this.db.inTransaction) throw err
      return { kind: 'refused', error: err }
    }
  }

  private initIdentity (wanted: string | undefined, readonly: boolean): string {
    const stored = this.readMeta(META.nodeId)
    if (typeof stored === 'string') {
      if (wanted !== undefined && wanted !== '' && wanted !== stored) {
        throw new StoreError('ERR_NODE_ID_MISMATCH', `database ${this.path} belongs to node "${stored}", not "${wanted}"`)
      }
      return stored
    }
    if (readonly) throw new StoreError('ERR_STORE_UNINITIALIZED', `database ${this.path} has no node id yet`)
    const id = wanted !== undefined && wanted !== '' ? wanted : randomBytes(4).toString('hex')
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      throw new StoreError('ERR_NODE_ID_INVALID', 'a node id is 1-64 characters of A-Z a-z 0-9 _ -')
    }
    // Several workers may open a fresh file at once: first writer wins, all read it back.
    this.db.transaction(() => {
      if (this.readMeta(META.nodeId) === undefined) {
        this.writeMetaStmt.run(META.nodeId, id)
        this.writeMetaStmt.run(META.seq, 0)
        this.writeMetaStmt.run(META.term, 1)
        this.writeMetaStmt.run(META.epoch, 0)
        this.writeMetaStmt.run(META.createdAt, new Date().toISOString())
      }
    }).immediate()
    return this.readMeta(META.nodeId) as string
  }

  setWriteGuard (guard: WriteGuard | undefined): void {
    this.guard = guard
  }

  /** The epoch of the map installed on this node (0: none). */
  installedEpoch (): number {
    return this.epochStmt.get()?.value ?? 0
  }

  /** The underlying database, for the storage modules that extend this one (migration). */
  get database (): Database.Database {
    return this.db
  }

  /** The live value of a key at `now` (undefined: none, deleted, or expired). */
  get (key: string, now = Date.now()): StoredValue | undefined {
    const row = this.getStmt.get(key)
    if (row === undefined || isExpired(row.expires_at, now)) return undefined
    return { value: row.value ?? EMPTY, contentType: row.content_type, version: row.version, seq: row.seq, expiresAt: row.expires_at }
  }

  /** Writes a value if the conditions hold, in one immediate transaction (`ttlMs`: it expires that long after the commit). */
  put (key: string, value: Buffer, contentType: string, conditions: WriteConditions = {}, request?: RequestStamp, ttlMs?: number): WriteOutcome {
    return this.putTxn({ key, value, contentType, cond: conditions, request, deleted: 0, ttlMs })
  }

  /** Deletes by writing a tombstone, so that the delete replicates and migrates like a write. */
  delete (key: string, conditions: WriteConditions = {}, request?: RequestStamp): WriteOutcome {
    return this.putTxn({ key, value: EMPTY, contentType: '', cond: conditions, request, deleted: 1 })
  }

  /**
   * Runs many ops in ONE transaction (one commit, one fsync): each write exactly as
   * `put`/`delete` run it (guard with the epoch read in this transaction, request-id
   * replay, preconditions, seq bump), each in its own savepoint, and each get reads
   * what the ops before it left. Outcomes come back in op order. Throws only when the
   * transaction as a whole fails (e.g. SQLITE_BUSY): then nothing of it committed.
   * With no write among the ops it is a plain read transaction (one snapshot).
   */
  applyOps (ops: readonly StoreOp[]): OpOutcome[] {
    if (ops.length === 0) return []
    return ops.some((o) => o.op !== 'get') ? this.opsTxn.immediate(ops) : this.opsTxn.deferred(ops)
  }

  /** Rows (tombstones included) with seq > afterSeq, in seq order: the change log. */
  changesSince (afterSeq: number, limit: number): ChangeRow[] {
    return this.changesStmt.all(afterSeq, limit).map((r) => ({
      key: r.key, value: r.value, contentType: r.content_type, version: r.version, seq: r.seq, deleted: r.deleted === 1, expiresAt: r.expires_at
    }))
  }

  /**
   * The next window of the change log after `after`: at most `limit` rows and `limit`
   * applied-request records, read in one snapshot. When either stream fills its limit,
   * the window ends where that stream's last entry stands, and the other is cut there.
   */
  /** At most `limit` rows and records, and rows of at most `maxBytes` value bytes (one row at least). */
  logWindow (after: number, limit: number, maxBytes = Infinity): LogWindow {
    return this.windowTxn(after, limit, maxBytes)
  }

  readMeta (name: string): unknown {
    return this.readMetaStmt.get(name)?.value
  }

  writeMeta (name: string, value: unknown): void {
    this.writeMetaStmt.run(name, value)
  }

  /**
   * Writes a meta value in a commit that does not wait for the disk (no fsync): a crash
   * may lose it, or it becomes durable with the next synced commit (WAL frames are
   * appended in order). Only for a value whose loss makes the node more careful, never
   * less: a renewal of the primary's lease, several a second, which a crash may lose
   * (the lease only ends sooner) — an fsync there stalled the event loop under write load.
   * Inside a transaction it is an ordinary write of that transaction.
   */
  writeMetaUnsynced (name: string, value: unknown): void {
    if (this.unsyncedStmts === undefined || this.db.inTransaction) { this.writeMeta(name, value); return }
    this.unsyncedStmts.off.run()
    try {
      this.writeMetaStmt.run(name, value)
    } finally {
      this.unsyncedStmts.restore.run()
    }
  }

  /** The highest seq written: the node's replication position. */
  position (): number {
    return Number(this.readMeta(META.seq) ?? 0)
  }

  stats (): NodeStats {
    const row = this.db.prepare('SELECT SUM(deleted = 0) AS keys, SUM(deleted = 1) AS tombstones FROM kv').get() as { keys: number | null, tombstones: number | null }
    return { keys: row.keys ?? 0, tombstones: row.tombstones ?? 0, position: this.position(), feed: this.feed.stats() }
  }

  /** The term under which this node's data was written or shipped to it. */
  currentTerm (): number {
    return this.termStmt.get()?.value ?? this.term
  }

  /** The installed epoch and lease, in one read (checked on every client request). */
  fence (): { epoch: number, leaseUntil: number } {
    const row = this.fenceStmt.get()
    return { epoch: row?.epoch ?? 0, leaseUntil: row?.lease ?? 0 }
  }

  get isOpen (): boolean {
    return this.db.open
  }

  close (): void {
    if (this.db.open) this.db.close()
  }
}

/** A write op as the write transaction takes it. */
function writeSpecOf (op: Exclude<StoreOp, { op: 'get' }>): WriteSpec {
  switch (op.op) {
    case 'put': return { key: op.key, value: op.value, contentType: op.contentType, cond: op.conditions ?? {}, request: op.request, deleted: 0, ttlMs: op.ttlMs }
    case 'delete': return { key: op.key, value: EMPTY, contentType: '', cond: op.conditions ?? {}, request: op.request, deleted: 1 }
    case 'expire': return { key: op.key, value: EMPTY, contentType: '', cond: {}, request: undefined, deleted: 1, expireVersion: op.version }
  }
}
