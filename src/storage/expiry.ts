import type Database from 'better-sqlite3'
import type { KvStore } from './store'

/**
 * What the expiry sweeper reads: live rows whose expiry has passed, oldest expiry first,
 * over the partial index of rows with an expiry (schema migration 3), so the scan costs
 * nothing for a node whose keys have no TTL. The sweeper deletes what it finds through
 * the ordinary write path (an `expire` op), never here.
 */

export interface DueRow { key: string, version: string }

export class ExpiryReader {
  private readonly dueStmt: Database.Statement<[number, number], DueRow>

  constructor (store: KvStore) {
    this.dueStmt = store.database.prepare('SELECT key, version FROM kv WHERE deleted = 0 AND expires_at <= ? ORDER BY expires_at LIMIT ?')
  }

  /** At most `limit` live rows expired at `now`. */
  due (now: number, limit: number): DueRow[] {
    return this.dueStmt.all(now, limit)
  }
}
