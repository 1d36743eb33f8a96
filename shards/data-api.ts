import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { KvStore, WriteOutcome } from '../src/storage/store'
import { keyFromUrl } from '../src/protocol/key'
import { KV_PREFIX, HEADER, DEFAULT_CONTENT_TYPE } from '../src/protocol/wire'
import { ShardKvError, errorBody } from '../src/protocol/errors'
import { formatEtag, notModified, parseEtagList, type WriteConditions } from '../src/protocol/preconditions'
import type { ShardMetrics } from './metrics'
import type { OwnershipCache } from './ownership-cache'
import type { Ownership } from '../src/membership/ownership'
import type { MigrationStore } from '../src/storage/migration-store'

/**
 * The data API as a shard node serves it: straight onto the node's KvStore.
 * Conditions are evaluated by the store inside the write's own transaction, so a
 * concurrent writer in another worker cannot slip between check and write.
 */

const EMPTY = Buffer.alloc(0)
const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/

export interface DataApiContext {
  store: KvStore
  migration: MigrationStore
  ownership: OwnershipCache
  /** Resolves once `seq` is on every replica the primary must wait for (at once without replicas). */
  replicated: (seq: number) => Promise<void>
  metrics: ShardMetrics
  /** Set while this worker drains: answer, then close the connection. */
  isDraining: () => boolean
}

function writeConditions (request: FastifyRequest): WriteConditions {
  return {
    ifMatch: parseEtagList(request.headers['if-match'], 'If-Match'),
    ifNoneMatch: parseEtagList(request.headers['if-none-match'], 'If-None-Match')
  }
}

function requestOrigin (request: FastifyRequest): string | undefined {
  const id = request.headers[HEADER.requestId]
  if (id === undefined) return undefined
  if (typeof id !== 'string' || !REQUEST_ID.test(id)) {
    throw new ShardKvError('invalid_header', `${HEADER.requestId} must be 1-64 characters of A-Z a-z 0-9 _ -`)
  }
  return id
}

/** The sender's map epoch (undefined when it sent none: a direct client). */
function senderEpoch (request: FastifyRequest): number | undefined {
  const epoch = request.headers[HEADER.epoch]
  if (epoch === undefined) return undefined
  if (typeof epoch !== 'string' || !/^\d{1,15}$/.test(epoch)) {
    throw new ShardKvError('invalid_header', `${HEADER.epoch} must be a non-negative integer`)
  }
  return Number(epoch)
}

function preconditionFailed (reply: FastifyReply, outcome: Extract<WriteOutcome, { ok: false }>): FastifyReply {
  const body = errorBody('precondition_failed', 'the precondition on the current version failed',
    outcome.current === undefined ? { current: null } : { current: formatEtag(outcome.current) })
  return reply.code(412).type('application/json').send(body)
}

export function registerDataApi (app: FastifyInstance, ctx: DataApiContext): void {
  const { store, metrics, ownership, migration, replicated } = ctx
  const nodeId = store.nodeId

  // The fence, evaluated inside every write transaction against the epoch read there.
  store.setWriteGuard((key, epoch) => {
    const current = ownership.get(epoch)
    if (current.role !== 'primary' || current.access(key) !== 'owned') throw ownership.misdirected(key, current)
  })

  /**
   * Client requests are served by a group's primary only, and — when a failover could
   * replace it — only under the coordinator's lease: a primary that was cut off stops
   * serving before the coordinator may promote a replica.
   */
  const servingView = (key: string): Ownership => {
    const fence = store.fence()
    const current = ownership.get(fence.epoch)
    if (current.role !== 'primary') throw ownership.misdirected(key, current)
    if (current.needsLease && Date.now() >= fence.leaseUntil) {
      throw new ShardKvError('misdirected', `the primary's lease has run out (term ${current.term}); the group may be failing over`, { epoch: current.epoch, group: current.group, reason: 'lease_expired' })
    }
    return current
  }

  app.addHook('onRequest', (_request, reply, done) => {
    reply.header(HEADER.node, nodeId)
    if (ctx.isDraining()) reply.header('connection', 'close')
    done()
  })

  const read = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const key = keyFromUrl(request.raw.url ?? '')
    const epoch = senderEpoch(request)
    const ifNoneMatch = parseEtagList(request.headers['if-none-match'], 'If-None-Match')
    const current = servingView(key)
    const access = current.access(key)
    // A key being handed over is read here only by a router that already routes by
    // the new map and found no copy at the new owner; anyone else is sent away, so a
    // router with an old map cannot read a value the new owner has since replaced.
    if (access === 'foreign' || (access === 'handover' && (request.headers[HEADER.fallback] !== '1' || epoch !== current.epoch))) {
      throw ownership.misdirected(key, current)
    }
    const found = store.get(key)
    metrics.reads.inc()
    if (found === undefined) {
      const tombstone = migration.row(key)
      if (tombstone !== undefined) {
        // Not even an absence is shown before it is replicated: a failover could undo it.
        await replicated(tombstone.seq)
        reply.header(HEADER.tombstone, '1')
      }
      return reply.code(404).type('application/json').send(errorBody('not_found', 'no value is stored under this key'))
    }
    await replicated(found.seq)
    const etag = formatEtag(found.version)
    reply.header('etag', etag)
    if (notModified(ifNoneMatch, found.version)) return reply.code(304).send()
    return reply.code(200).type(found.contentType).send(found.value)
  }

  app.get(`${KV_PREFIX}*`, read)

  app.put(`${KV_PREFIX}*`, async (request, reply) => {
    const key = keyFromUrl(request.raw.url ?? '')
    senderEpoch(request)
    servingView(key)
    const conditions = writeConditions(request)
    const origin = requestOrigin(request)
    const body = Buffer.isBuffer(request.body) ? request.body : EMPTY
    const contentType = request.headers['content-type'] ?? DEFAULT_CONTENT_TYPE
    const outcome = store.put(key, body, contentType, conditions, origin)
    metrics.writes.inc()
    if (!outcome.ok) return preconditionFailed(reply, outcome)
    await replicated(outcome.seq)
    return reply.code(outcome.existed ? 200 : 201)
      .header('etag', formatEtag(outcome.version))
      .type('application/json')
      .send(`{"version":${JSON.stringify(outcome.version)}}`)
  })

  app.delete(`${KV_PREFIX}*`, async (request, reply) => {
    const key = keyFromUrl(request.raw.url ?? '')
    senderEpoch(request)
    servingView(key)
    const outcome = store.delete(key, writeConditions(request), requestOrigin(request))
    metrics.writes.inc()
    if (!outcome.ok) return preconditionFailed(reply, outcome)
    await replicated(outcome.seq)
    return reply.code(204).send()
  })
}
