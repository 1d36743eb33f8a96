import { ShardKvError } from './errors'
import { parseRequestId } from './request-id'
import type { WireAppliedRequest, WireKeyTransfer, WireRow } from './wire'
import type { ChangeRow } from '../storage/store'
import type { AppliedRequest } from '../storage/applied-requests'
import type { Shipment } from '../storage/replica-store'
import type { KeyTransfer, MigratingRow } from '../storage/migration-store'
import type { FeedEntry } from '../storage/feed'

/**
 * The change log on the wire, both ways, for the two node-to-node streams: replication
 * shipments (primary → replica, `POST /internal/replication/apply`) and key transfers
 * (migration and copy on touch, source → router/coordinator → target). Values travel
 * base64-encoded; everything a receiver takes in is checked here, once.
 */

/** A changed row in a shipment (seq included: a replica keeps the primary's). */
export interface WireChange { key: string, value: string, contentType: string, version: string, seq: number, deleted: boolean, expiresAt?: number }

/** `POST /internal/replication/apply`'s body: `from = -1` is a probe ("where do you stand?"). */
export interface WireShipment {
  /** The shipping primary's URL in the map (replicas take shipments from their map's primary only). */
  sender?: string
  group: string
  term: number
  from: number
  to: number
  rows: WireChange[]
  requests: WireAppliedRequest[]
  floor: number
  /** The change feed in (from, to] (src/storage/feed.ts): the stored shape. */
  feed?: FeedEntry[]
  feedFloor?: number
}

/** A replica's answer to a shipment or a probe: the position it stands at (it has durably applied everything up to there). */
export interface WireShipmentAnswer {
  position: number
}

function invalid (message: string): ShardKvError {
  return new ShardKvError('invalid_request', message)
}

function isSeq (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function appliedRequestFromWire (v: unknown): AppliedRequest {
  const r = v as Partial<WireAppliedRequest> | null
  if (r === null || typeof r !== 'object' || typeof r.id !== 'string' || parseRequestId(r.id) === undefined ||
      typeof r.key !== 'string' || !isSeq(r.issued) || typeof r.fingerprint !== 'string' || r.fingerprint.length > 64 ||
      !isSeq(r.seq) || typeof r.version !== 'string' || r.version.length === 0 || typeof r.existed !== 'boolean') {
    throw invalid('each applied request needs id, key, issued, fingerprint, seq, version and existed')
  }
  return { id: r.id, key: r.key, issued: r.issued, fingerprint: r.fingerprint, seq: r.seq, version: r.version, existed: r.existed }
}

function requestsFromWire (v: unknown): AppliedRequest[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) throw invalid('requests must be an array')
  return v.map(appliedRequestFromWire)
}

function floorFromWire (v: unknown): number {
  if (v === undefined) return 0
  if (!isSeq(v)) throw invalid('floor must be a non-negative integer')
  return v
}

/** An expiry as it travels: absent for none (what senders from before TTLs send too). */
function expiryFromWire (v: unknown): number | null {
  if (v === undefined || v === null) return null
  if (!isSeq(v)) throw invalid('expiresAt must be a non-negative integer (ms since the epoch)')
  return v
}

function rowToWire (r: MigratingRow): WireRow {
  const w: WireRow = { key: r.key, value: r.value.toString('base64'), contentType: r.contentType, version: r.version, deleted: r.deleted }
  if (r.expiresAt !== null) w.expiresAt = r.expiresAt
  return w
}

function rowFromWire (value: unknown): MigratingRow {
  const r = value as Partial<WireRow> | null
  if (r === null || typeof r !== 'object' || typeof r.key !== 'string' || typeof r.value !== 'string' ||
      typeof r.contentType !== 'string' || typeof r.version !== 'string' || r.version.length === 0) {
    throw invalid('each row needs key, value (base64), contentType and version')
  }
  return { key: r.key, value: Buffer.from(r.value, 'base64'), contentType: r.contentType, version: r.version, deleted: r.deleted === true, expiresAt: expiryFromWire(r.expiresAt) }
}

export function transferToWire (t: KeyTransfer): WireKeyTransfer {
  return { rows: t.rows.map(rowToWire), requests: t.requests, floor: t.floor }
}

export function transferFromWire (body: Record<string, unknown>): KeyTransfer {
  if (!Array.isArray(body.rows)) throw invalid('rows must be an array')
  return { rows: body.rows.map(rowFromWire), requests: requestsFromWire(body.requests), floor: floorFromWire(body.floor) }
}

export function changeToWire (r: ChangeRow): WireChange {
  const w: WireChange = { key: r.key, value: r.value.toString('base64'), contentType: r.contentType, version: r.version, seq: r.seq, deleted: r.deleted }
  if (r.expiresAt !== null) w.expiresAt = r.expiresAt
  return w
}

function changeFromWire (v: unknown): ChangeRow {
  const r = v as Partial<WireChange> | null
  if (r === null || typeof r !== 'object' || typeof r.key !== 'string' || typeof r.value !== 'string' ||
      typeof r.contentType !== 'string' || typeof r.version !== 'string' || !isSeq(r.seq)) {
    throw invalid('each change needs key, value (base64), contentType, version and seq')
  }
  return { key: r.key, value: Buffer.from(r.value, 'base64'), contentType: r.contentType, version: r.version, seq: r.seq, deleted: r.deleted === true, expiresAt: expiryFromWire(r.expiresAt) }
}

function feedEntryFromWire (v: unknown): FeedEntry {
  const e = v as Partial<FeedEntry> | null
  if (e === null || typeof e !== 'object' || !isSeq(e.seq) || typeof e.key !== 'string' || typeof e.version !== 'string' ||
      typeof e.contentType !== 'string' || typeof e.deleted !== 'boolean' || !isSeq(e.at) ||
      (e.reason !== null && e.reason !== 'expired' && e.reason !== 'moved')) {
    throw invalid('each feed entry needs seq, key, version, contentType, deleted, reason (null, "expired" or "moved") and at')
  }
  return { seq: e.seq, key: e.key, version: e.version, contentType: e.contentType, deleted: e.deleted, reason: e.reason, at: e.at }
}

function feedFromWire (v: unknown): FeedEntry[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) throw invalid('feed must be an array')
  return v.map(feedEntryFromWire)
}

/** The rows, records, feed and floors of a shipment whose `to` the caller has already checked. */
export function shipmentFromWire (body: Record<string, unknown>, to: number): Shipment {
  if (!Array.isArray(body.rows)) throw invalid('rows must be an array')
  const rows = body.rows.map(changeFromWire)
  const requests = requestsFromWire(body.requests)
  const feed = feedFromWire(body.feed)
  if (rows.some((r) => r.seq > to) || requests.some((r) => r.seq > to) || feed.some((e) => e.seq > to)) throw invalid('a shipment holds nothing past its `to`')
  return { rows, requests, to, floor: floorFromWire(body.floor), feed, feedFloor: floorFromWire(body.feedFloor) }
}
