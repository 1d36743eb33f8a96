import type { FastifyRequest } from 'fastify'
import type { KvStore, OpOutcome, StoreOp } from '../src/storage/store'
import type { GroupCommit } from '../src/storage/group-commit'
import type { Ownership } from '../src/membership/ownership'
import type { OwnershipCache } from './ownership-cache'
import { HEADER, REQUEST_ID_PATTERN } from '../src/protocol/wire'
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

/** The request id a write is recorded under, so a retry is applied once (undefined: none sent). */
export function requestOrigin (request: FastifyRequest): string | undefined {
  const id = request.headers[HEADER.requestId]
  if (id === undefined) return undefined
  if (typeof id !== 'string' || !REQUEST_ID_PATTERN.test(id)) {
    throw new ShardKvError('invalid_header', `${HEADER.requestId} must be 1-80 characters of A-Z a-z 0-9 _ -`)
  }
  return id
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
  if (current.needsLease && Date.now() >= fence.leaseUntil) {
    throw new ShardKvError('misdirected', `the primary's lease has run out (term ${current.term}); the group may be failing over`, { epoch: current.epoch, group: current.group, reason: 'lease_expired' })
  }
  return current
}
