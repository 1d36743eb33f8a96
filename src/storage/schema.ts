import type Database from 'better-sqlite3'

/**
 * Schema of a shard node's SQLite file. `kv` is both the data and its own compacted
 * change log: every write bumps the node-wide `seq` counter in the same transaction,
 * so "rows with seq > N" is exactly what a replica or a migration target still needs
 * (DESIGN.md, Storage). Deletes leave tombstones for the same reason.
 */
export const SCHEMA_VERSION = 4

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE kv (
      key          TEXT    NOT NULL PRIMARY KEY,
      value        BLOB    NOT NULL,
      content_type TEXT    NOT NULL,
      version      TEXT    NOT NULL,
      seq          INTEGER NOT NULL,
      deleted      INTEGER NOT NULL DEFAULT 0,
      origin       TEXT
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX kv_by_seq ON kv (seq);
    CREATE TABLE meta (
      name  TEXT NOT NULL PRIMARY KEY,
      value ANY
    ) STRICT, WITHOUT ROWID;
  `,
  // The record of applied request ids (src/storage/applied-requests.ts) replaces the
  // per-row origin, which forgot a write's id as soon as a newer write replaced the row.
  2: `
    ALTER TABLE kv DROP COLUMN origin;
    CREATE TABLE applied_requests (
      id          TEXT    NOT NULL PRIMARY KEY,
      key         TEXT    NOT NULL,
      issued      INTEGER NOT NULL,
      fingerprint TEXT    NOT NULL,
      seq         INTEGER NOT NULL,
      version     TEXT    NOT NULL,
      existed     INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX applied_requests_by_seq ON applied_requests (seq);
  `,
  // Time to live (src/protocol/ttl.ts): the absolute expiry travels with the row through
  // replication and migration. A tombstone the sweeper wrote keeps the expiry it acted on
  // (so the change feed can say why the key went). The partial index holds live rows with
  // an expiry only: the sweeper's scan costs nothing for keys without a TTL.
  3: `
    ALTER TABLE kv ADD COLUMN expires_at INTEGER;
    CREATE INDEX kv_by_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL AND deleted = 0;
  `,
  // The change feed (src/storage/feed.ts): every change, not only each key's last one.
  4: `
    CREATE TABLE feed (
      seq          INTEGER NOT NULL PRIMARY KEY,
      key          TEXT    NOT NULL,
      version      TEXT    NOT NULL,
      content_type TEXT    NOT NULL,
      deleted      INTEGER NOT NULL,
      reason       TEXT,
      at           INTEGER NOT NULL
    ) STRICT;
  `
}

/** Meta rows: identity, counters and the node's installed cluster state. */
export const META = {
  nodeId: 'node_id',
  seq: 'seq',
  term: 'term',
  epoch: 'epoch',
  map: 'map',
  /** Until when (ms since the epoch) the coordinator lets this primary serve. */
  leaseUntil: 'lease_until',
  createdAt: 'created_at',
  /**
   * Request ids issued before this (ms since the epoch) may have been applied and
   * forgotten: they are refused, never applied (see applied-requests.ts).
   */
  requestFloor: 'request_floor',
  /**
   * A fenced primary's record of a planned switchover (JSON, see Handoff in
   * src/replication/policy.ts): its data is exactly the prefix the named new primary
   * starts the next term from, so it may rejoin without a resync.
   */
  handoff: 'handoff',
  /** Change-feed entries at or below this seq may be compacted away (src/storage/feed.ts). */
  feedFloor: 'feed_floor'
} as const

/** Brings a database to SCHEMA_VERSION; safe when several processes race to do it. */
export function migrate (db: Database.Database): void {
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number
    for (let v = current + 1; v <= SCHEMA_VERSION; v++) {
      const sql = MIGRATIONS[v]
      if (sql === undefined) throw new Error(`no migration to schema version ${v}`)
      db.exec(sql)
      db.pragma(`user_version = ${v}`)
    }
    if (current > SCHEMA_VERSION) {
      throw new Error(`database schema ${current} is newer than this build (${SCHEMA_VERSION})`)
    }
  }).immediate()
}
