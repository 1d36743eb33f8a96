import { hash, randomFillSync } from 'node:crypto'
import { ShardKvError } from './errors'
import type { WriteConditions } from './preconditions'

/**
 * Request ids: what makes a write take effect once however often it is retried.
 *
 * Grammar (one, for the header `x-shardkv-request-id`, a batch's id and a batch op's `rid`):
 *
 *     <issued: ms since the Unix epoch, base 36, 1-11 chars> "." <nonce: 8-72 of A-Z a-z 0-9 _ ->
 *
 * The issue time is in the id because a node keeps the record of applied ids for a
 * window only (`--request-id-window`): an id issued before the oldest record a node can
 * still vouch for (its *floor*) might have been applied and forgotten, so it is refused
 * (`request_id_expired`) instead of being applied blind. The nonce is 128 random bits
 * (22 base64url chars) when this module makes it, so an id cannot be guessed to stand
 * in for someone else's write. A batch's op i is recorded under `<batch id>-<i>`, which
 * keeps the grammar (and the batch's issue time).
 */

export const REQUEST_ID_PATTERN = /^([0-9a-z]{1,11})\.([A-Za-z0-9_-]{8,72})$/
export const REQUEST_ID_GRAMMAR = '<issue time in ms, base 36>.<8-72 characters of A-Z a-z 0-9 _ ->'

export interface RequestId {
  id: string
  /** When the sender issued it (ms since the Unix epoch, the sender's clock). */
  issued: number
}

/**
 * The identity a node records a write under: the id, when it was issued, and a
 * fingerprint of the operation, so that the same id sent with another operation is
 * refused (`idempotency_key_reused`) instead of being answered with this one's result.
 */
export interface RequestStamp extends RequestId {
  fingerprint: string
}

/** Parses a request id; undefined when it does not follow the grammar. */
export function parseRequestId (id: string): RequestId | undefined {
  const m = REQUEST_ID_PATTERN.exec(id)
  if (m === null) return undefined
  const issued = parseInt(m[1] as string, 36)
  return Number.isSafeInteger(issued) ? { id, issued } : undefined
}

/** Room a batch id leaves for the `-<index>` its ops are recorded under (max-batch-ops is at most 10000). */
export const BATCH_ID_ROOM = 6

/**
 * Parses a request id or throws the 400 every receiver answers for a malformed one.
 * `room`: characters the id must leave free for a suffix (a batch id's op index).
 */
export function requireRequestId (id: unknown, room = 0): RequestId {
  const parsed = typeof id === 'string' ? parseRequestId(id) : undefined
  if (parsed === undefined || parsed.id.length - parsed.id.indexOf('.') - 1 + room > 72) {
    throw new ShardKvError('invalid_header', `x-shardkv-request-id must be ${REQUEST_ID_GRAMMAR}${room > 0 ? ` (a batch's: at most ${72 - room} after the dot)` : ''}`)
  }
  return parsed
}

// Random bytes are drawn in blocks: one randomFillSync per 256 ids, not one per id.
const POOL = Buffer.alloc(16 * 256)
let poolAt = POOL.length

/** A new request id issued now: the time and 128 random bits. */
export function newRequestId (now = Date.now()): string {
  if (poolAt === POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }
  const nonce = POOL.toString('base64url', poolAt, poolAt + 16)
  poolAt += 16
  return `${now.toString(36)}.${nonce}`
}

/** The id op `index` of a batch is recorded under (when the op carries no `rid` of its own). */
export function batchOpRequestId (batchId: string, index: number): string {
  return `${batchId}-${index}`
}

export interface FingerprintedOp {
  op: 'put' | 'delete'
  key: string
  value?: Buffer
  contentType?: string
  conditions?: WriteConditions
  /** The authenticated principal the write is made for (undefined: none, auth off). */
  principal?: string
  /** A put's time to live in ms (src/protocol/ttl.ts). */
  ttlMs?: number
}

function tags (set: WriteConditions['ifMatch']): string {
  return set === undefined ? '' : set === '*' ? '*' : set.join(',')
}

/**
 * What a request id is bound to: the principal, the operation, its key, value digest,
 * content type and preconditions. 132 bits of SHA-256 (22 base64url characters):
 * collisions between two operations sent under one id are out of reach. The principal
 * makes one id reused by two clients a 422 even for the same operation: the second
 * client must not be told its write succeeded when it was the first's. Without a
 * principal the fingerprint is what it was before principals existed, so records
 * already stored keep matching; the same goes for a TTL (a write without one
 * fingerprints as before TTLs existed).
 */
export function fingerprintOf (op: FingerprintedOp): string {
  const who = op.principal === undefined || op.principal === '' ? '' : `@${op.principal.length}:${op.principal}\n`
  const ttl = op.ttlMs === undefined ? '' : `ttl:${op.ttlMs}\n`
  const head = Buffer.from(`${who}${op.op}\n${op.key.length}:${op.key}\n${op.contentType ?? ''}\n${tags(op.conditions?.ifMatch)}\n${tags(op.conditions?.ifNoneMatch)}\n${ttl}`)
  // One-shot hash: half the cost of a Hash object on the write path.
  return hash('sha256', op.value === undefined ? head : Buffer.concat([head, op.value]), 'base64url').slice(0, 22)
}
