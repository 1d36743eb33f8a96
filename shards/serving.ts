import type { FastifyRequest } from 'fastify'
import type { KvStore, OpOutcome, StoreOp } from '../src/storage/store'
import type { GroupCommit } from '../src/storage/group-commit'
import type { Ownership } from '../src/membership/ownership'
import type { OwnershipCache } from './ownership-cache'
import { HEADER } from '../src/protocol/wire'
import { fingerprintOf, requireRequestId, type RequestId } from '../src/protocol/request-id'
import { ShardKvError } from '../src/protocol/errors'
import { parseEtagList, type WriteConditions } from '../src/protocol/preconditions'

/**
 * The serving rules every client-facing route of a shard node shares (single keys and
 * batches): who may serve, and how the router's headers are read.
 */

/** The worker's group-commit queue over its store (see src/storage/group-commit.ts). */
export type WriteQueue = GroupCommit<StoreOp, OpOutcome>


export function writeConditions (request: FastifyRequest): WriteConditions {
  return {
    ifMatch: parseEtagList(request.headers['if-match'], 'If-Match'),
    ifNoneMatch: parseEtagList(request.headers['if-none-match'], 'If-None-Match')
  }
}

/** The request id sent with a write (undefined: none sent; a malformed one is a 400). */
export function requestIdOf (request: FastifyRequest): RequestId | undefined {
  const id = request.headers[HEADER.requestId]
  return id === undefined ? undefined : requireRequestId(id)
}

type WriteOp = Extract<StoreOp, { op: 'put' | 'delete' }>

/**
 * A write op bound to the request id it is recorded under: the fingerprint is taken of
 * the op exactly as the store will apply it, so a single-key write and the same write
 * sent inside a batch (the router sends moving keys of a batch one by one) agree; and
 * of the principal it is made for (src/auth/client-guard.ts), so two clients cannot
 * share one id.
 */
export function stamped<T extends WriteOp> (op: T, id: RequestId | undefined, principal?: string): T {
  if (id !== undefined) op.request = { id: id.id, issued: id.issued, fingerprint: fingerprintOf(principal === undefined ? op : { ...op, principal }) }
  return op
}

/** The sender's map epoch (undefined when it sent none: a direct client). */
export function senderEpoch (request: FastifyRequest): number | undefined {
  const epoch = request.headers[HEADER.epoch]
  if (epoch === undefined) return undefined
  if (typeof epoch !== 'string' || !/^\d{1,15}$/.test(epoch)) {
    throw new ShardKvError('invalid_header', `${HEADER.epoch} must be a non-negative integer`)
  }
  return Number(epoch)
}

/**
 * Client requests are served by a group's primary only, and — when a failover could
 * replace it — only under the coordinator's lease: a primary that was cut off stops
 * serving before the coordinator may promote a replica. Returns the ownership to judge
 * keys by; throws a 421 otherwise.
 */
export function servingView (store: KvStore, ownership: OwnershipCache, key = ''): Ownership {
  const fence = store.fence()
  const current = ownership.get(fence.epoch)
  if (current.role !== 'primary') throw ownership.misdirected(key, current)
  if (current.needsLease && Date.now() >= fence.leaseUntil) throw leaseExpired(current)
  return current
}

/** The 421 of a primary without a lease (it ran out, or a switchover revoked it): the router retries. */
export function leaseExpired (current: Ownership): ShardKvError {
  return new ShardKvError('misdirected', `the primary's lease has run out (term ${current.term}); the group may be failing or switching over`, { epoch: current.epoch, group: current.group, reason: 'lease_expired' })
}
