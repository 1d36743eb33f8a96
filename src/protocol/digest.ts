/**
 * The consistency check's wire shapes (`shardkv check`, docs/cli.md), declared once for
 * the shard node that answers them (shards/digest-api.ts), the router that relays them
 * (router/check.ts) and the CLI that compares them (scripts/shardkv/check.ts).
 *
 * A digest covers one page of a node's rows in key order: (key, version, tombstone) of
 * each, hashed, plus the rows the installed map gives to another group ("foreign"). The
 * caller pages through a group's primary and asks each replica for exactly the same key
 * range, so equal data gives equal digests whatever the table size; every call reads a
 * bounded number of rows.
 */

/** Shard node, peer API: `POST` a WireDigestRequest, answered with a WireDigestPage. */
export const DIGEST_PATH = '/internal/digest'

/** Router, admin API: `POST` a WireGroupDigestRequest, answered with a WireGroupDigest. */
export const ADMIN_DIGEST_PATH = '/admin/check/digest'

/** Rows per page: the default, and the most one call may read. */
export const DIGEST_PAGE_ROWS = 2000
export const DIGEST_MAX_ROWS = 20_000
/** Foreign keys named in a page's answer (the count is always complete). */
export const DIGEST_FOREIGN_SAMPLE = 5

/** Rows with `after` < key (and key <= `until` when given), at most `limit`, in key order. */
export interface WireDigestRequest {
  after: string
  until?: string
  limit?: number
}

export interface WireDigestPage {
  /** The epoch of the map the node judged foreign rows by. */
  epoch: number
  rows: number
  tombstones: number
  /** Rows (tombstones included) whose key the installed map gives to another group. */
  foreign: number
  foreignSample: string[]
  /** Hex sha256 over the page's (key, version, tombstone) rows in key order. */
  digest: string
  /** The last key of the page ('' for an empty page). */
  last: string
  /** No row of the requested range is left after `last`. */
  done: boolean
  /** The node's replication position when the page was read. */
  position: number
}

/** One page of a group: the primary's next rows after `after`, and each replica's rows of the same range. */
export interface WireGroupDigestRequest {
  group: string
  after: string
  limit?: number
}

export interface WireNodeDigest {
  url: string
  role: 'primary' | 'replica'
  /** Absent when the node did not answer (`error` says why). */
  page?: WireDigestPage
  error?: string
}

export interface WireGroupDigest {
  group: string
  /** The router's map epoch when the page was read. */
  epoch: number
  after: string
  /** The range's end: the primary's last key, or null when the range runs to the end of the table. */
  until: string | null
  /** The primary has no row after this page. */
  done: boolean
  nodes: WireNodeDigest[]
}
