import { createHash } from 'node:crypto'
import type Database from 'better-sqlite3'
import type { KvStore } from './store'
import { DIGEST_FOREIGN_SAMPLE, type WireDigestPage } from '../protocol/digest'

/**
 * A digest of one page of a node's rows, in key order, for the consistency check
 * (src/protocol/digest.ts). SQLite selects and orders the page over the primary-key
 * index and reads only key, version and the tombstone flag (never values); the hash is
 * taken here because SQLite has no hash function, and the foreign test is the ring's,
 * which lives in JS. The page is read in one snapshot, with the position beside it.
 */

/** A node's page as the wire carries it, less the epoch (the route adds the installed one). */
export type DigestPage = Omit<WireDigestPage, 'epoch'>

interface Row { key: string, version: string, deleted: number }

export class DigestReader {
  private readonly db: Database.Database
  private readonly open: Database.Statement<[string, number], Row>
  private readonly bounded: Database.Statement<[string, string, number], Row>

  constructor (private readonly store: KvStore) {
    this.db = store.database
    this.open = this.db.prepare('SELECT key, version, deleted FROM kv WHERE key > ? ORDER BY key LIMIT ?')
    this.bounded = this.db.prepare('SELECT key, version, deleted FROM kv WHERE key > ? AND key <= ? ORDER BY key LIMIT ?')
  }

  /** Rows after `after` (up to `until` inclusive, when given), at most `limit`. */
  page (after: string, until: string | undefined, limit: number, isForeign: (key: string) => boolean): DigestPage {
    return this.db.transaction((): DigestPage => {
      const hash = createHash('sha256')
      const page: DigestPage = { rows: 0, tombstones: 0, foreign: 0, foreignSample: [], digest: '', last: '', done: true, position: this.store.position() }
      // One row past the limit tells whether the range goes on.
      const rows = until === undefined ? this.open.iterate(after, limit + 1) : this.bounded.iterate(after, until, limit + 1)
      for (const r of rows) {
        if (page.rows === limit) {
          page.done = false
          break
        }
        // Length-prefixed fields: no key or version can make two pages hash alike.
        hash.update(`${Buffer.byteLength(r.key)}:${r.key}${r.version.length}:${r.version}${r.deleted}\n`)
        page.rows++
        if (r.deleted === 1) page.tombstones++
        if (isForeign(r.key)) {
          page.foreign++
          if (page.foreignSample.length < DIGEST_FOREIGN_SAMPLE) page.foreignSample.push(r.key)
        }
        page.last = r.key
      }
      page.digest = hash.digest('hex')
      return page
    }).deferred()
  }
}
