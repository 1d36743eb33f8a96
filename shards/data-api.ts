import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { KvStore, StoreOp, WriteOutcome } from '../src/storage/store'
import { keyFromUrl } from '../src/protocol/key'
import { KV_PREFIX, HEADER } from '../src/protocol/wire'
import { storedContentType } from '../src/protocol/content-type'
import { ShardKvError } from '../src/protocol/errors'
import { formatEtag, notModified, parseEtagList } from '../src/protocol/preconditions'
import { formatRemainingTtl, parseTtl } from '../src/protocol/ttl'
import type { ShardMetrics } from './metrics'
import type { OwnershipCache } from './ownership-cache'
import type { MigrationStore } from '../src/storage/migration-store'
import { authorizeKey, principalName } from '../src/auth/client-guard'
import { requestIdOf, senderEpoch, servingView, leaseExpired, stamped, writeConditions, type WriteQueue } from './serving'
import { ExpirySweeper } from './expiry-sweeper'

/** The expiry sweeper's pace (see expiry-sweeper.ts): a pass a second, at most this many rows each. */
const SWEEP_INTERVAL_MS = 1000
const SWEEP_BATCH = 256

/**
 * The data API as a shard node serves it: straight onto the node's KvStore.
 * Conditions are evaluated by the store inside the write's own transaction, so a
 * concurrent writer in another worker cannot slip between check and write. Writes go
 * through the worker's group commit: concurrent writes share one transaction (one
 * fsync), each still checked and applied alone (its own savepoint), and none answered
 * before that transaction committed.
 */

const EMPTY = Buffer.alloc(0)

export interface DataApiContext {
  store: KvStore
  migration: MigrationStore
  ownership: OwnershipCache
  /** Where writes go: they commit together with the worker's other concurrent writes. */
  writes: WriteQueue
  /** Resolves once `seq` is on every replica the primary must wait for (at once without replicas). */
  replicated: (seq: number) => Promise<void>
  metrics: ShardMetrics
  /** Set while this worker drains: answer, then close the connection. */
  isDraining: () => boolean
  /** How long the change feed keeps entries (`--watch-retention-seconds`). */
  feedRetentionMs: number
}

/** Runs one write through the group commit and returns its outcome (a refused write throws its error, e.g. 421). */
export async function commitOne (writes: WriteQueue, op: StoreOp): Promise<WriteOutcome> {
  const [result] = await writes.submit([op])
  if (result === undefined || result.kind === 'read') throw new Error('a write came back without a write outcome')
  if (result.kind === 'refused') throw result.error
  return result.outcome
}

/** A refused write's 412; the body names the current version (null: no value) so the client can retry against it. */
function preconditionFailed (outcome: Extract<WriteOutcome, { ok: false }>): ShardKvError {
  return new ShardKvError('precondition_failed', 'the precondition on the current version failed',
    { current: outcome.current === undefined ? null : formatEtag(outcome.current) })
}

export function registerDataApi (app: FastifyInstance, ctx: DataApiContext): void {
  const { store, metrics, ownership, migration, replicated, writes } = ctx
  const nodeId = store.nodeId

  // The fence, evaluated inside every write transaction against the epoch and lease read
  // there: once a revoked lease is written (a planned switchover), no write that passed the
  // check at its start can still commit, so the position read after the revocation is final.
  store.setWriteGuard((key, epoch, leaseUntil) => {
    const current = ownership.get(epoch)
    if (current.role !== 'primary' || current.access(key) !== 'owned') throw ownership.misdirected(key, current)
    if (current.needsLease && Date.now() >= leaseUntil) throw leaseExpired(current)
  })

  // Expired rows read as absent without it; it turns expiries into replicated deletes.
  const sweeper = new ExpirySweeper({ store, ownership, writes, replicated, log: app.log, intervalMs: SWEEP_INTERVAL_MS, batch: SWEEP_BATCH, feedRetentionMs: ctx.feedRetentionMs })
  app.addHook('onReady', async () => { sweeper.start() })
  app.addHook('onClose', async () => { sweeper.stop() })

  app.addHook('onRequest', (_request, reply, done) => {
    reply.header(HEADER.node, nodeId)
    // A stored value is the client's bytes: never let a browser sniff them into something else.
    reply.header('x-content-type-options', 'nosniff')
    if (ctx.isDraining()) reply.header('connection', 'close')
    done()
  })

  const read = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const key = keyFromUrl(request.raw.url ?? '')
    authorizeKey(request.principal, 'read', key)
    const epoch = senderEpoch(request)
    const ifNoneMatch = parseEtagList(request.headers['if-none-match'], 'If-None-Match')
    const current = servingView(store, ownership, key)
    const access = current.access(key)
    // A key being handed over is read here only by a router that already routes by
    // the new map and found no copy at the new owner; anyone else is sent away, so a
    // router with an old map cannot read a value the new owner has since replaced.
    if (access === 'foreign' || (access === 'handover' && (request.headers[HEADER.fallback] !== '1' || epoch !== current.epoch))) {
      throw ownership.misdirected(key, current)
    }
    const now = Date.now()
    const found = store.get(key, now)
    metrics.reads.inc()
    if (found === undefined) {
      // A tombstone, or a row that expired: either way this node's copy is the newest.
      const tombstone = migration.row(key)
      if (tombstone !== undefined) {
        // Not even an absence is shown before it is replicated: a failover could undo it.
        await replicated(tombstone.seq)
        reply.header(HEADER.tombstone, '1')
      }
      throw new ShardKvError('not_found', 'no value is stored under this key')
    }
    await replicated(found.seq)
    const etag = formatEtag(found.version)
    reply.header('etag', etag)
    const ttl = formatRemainingTtl(found.expiresAt, now)
    if (ttl !== undefined) reply.header(HEADER.ttl, ttl)
    if (notModified(ifNoneMatch, found.version)) return reply.code(304).send()
    return reply.code(200).type(found.contentType).send(found.value)
  }

  app.get(`${KV_PREFIX}*`, read)

  app.put(`${KV_PREFIX}*`, async (request, reply) => {
    const key = keyFromUrl(request.raw.url ?? '')
    authorizeKey(request.principal, 'write', key)
    senderEpoch(request)
    servingView(store, ownership, key)
    const conditions = writeConditions(request)
    const value = Buffer.isBuffer(request.body) ? request.body : EMPTY
    const contentType = storedContentType(request.headers['content-type'])
    const ttlMs = parseTtl(request.headers[HEADER.ttl], 'X-Shardkv-TTL')
    const op: StoreOp = { op: 'put', key, value, contentType, conditions }
    if (ttlMs !== undefined) op.ttlMs = ttlMs
    const outcome = await commitOne(writes, stamped(op, requestIdOf(request), principalName(request.principal)))
    metrics.writes.inc()
    if (!outcome.ok) throw preconditionFailed(outcome)
    await replicated(outcome.seq)
    return reply.code(outcome.existed ? 200 : 201)
      .header('etag', formatEtag(outcome.version))
      .type('application/json')
      .send(`{"version":${JSON.stringify(outcome.version)}}`)
  })

  app.delete(`${KV_PREFIX}*`, async (request, reply) => {
    const key = keyFromUrl(request.raw.url ?? '')
    authorizeKey(request.principal, 'write', key)
    senderEpoch(request)
    servingView(store, ownership, key)
    const outcome = await commitOne(writes, stamped({ op: 'delete', key, conditions: writeConditions(request) }, requestIdOf(request), principalName(request.principal)))
    metrics.writes.inc()
    if (!outcome.ok) throw preconditionFailed(outcome)
    await replicated(outcome.seq)
    return reply.code(204).send()
  })
}
