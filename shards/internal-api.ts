import type { NodeStats } from '../src/protocol/node-answers'
import { MAP_BODY_LIMIT } from '../src/protocol/limits'
import type { FastifyInstance } from 'fastify'
import { INTERNAL, type WireScanReply } from '../src/protocol/wire'
import { transferFromWire, transferToWire } from '../src/protocol/log-codec'
import { requireRequestId } from '../src/protocol/request-id'
import { ShardKvError } from '../src/protocol/errors'
import { decodeKeySegment } from '../src/protocol/key'
import { validateMap, type ClusterMap } from '../src/membership/map'
import { currentMembers, type Ownership } from '../src/membership/ownership'
import type { MigrationStore } from '../src/storage/migration-store'
import type { OwnershipCache } from './ownership-cache'
import type { Logger } from '../src/log'
import { jsonBody, integer } from '../src/http/json-body'
import { judgeMapInstaller } from '../src/auth/senders'
import { fenceOf, judgeFence } from '../src/registry/fence'

/**
 * The shard node's internal API: what the coordinator uses to install maps and
 * move keys between groups, and what routers use to copy a key on touch.
 */

export interface InternalApiContext {
  migration: MigrationStore
  ownership: OwnershipCache
  log: Logger
  batchBodyLimit: number
  /**
   * Check who installs maps (src/auth/senders.ts). Only with a cluster secret: without
   * one any sender can claim any coordinator URL, so a claim would prove nothing.
   */
  senderChecks: boolean
  stats: () => NodeStats
  adoptTerm: (term: number) => void
  onInstalled: (epoch: number) => void
  /** Resolves once rows up to `seq` are on the group's in-sync replicas. */
  replicated: (seq: number) => Promise<void>
}

/**
 * A settled map that skips transitions this node missed (it was down) and changes its
 * ring. In the normal flow the rebalancer purges (and counts) moved rows itself.
 */
function needsPurge (previous: unknown, next: ClusterMap): boolean {
  if (next.handover !== undefined) return false
  if (previous === undefined || previous === null) return false
  const before = previous as ClusterMap
  if (next.epoch <= before.epoch + 1) return false
  if (before.handover !== undefined) return true
  const members = (m: ClusterMap): string => currentMembers(m).map((g) => `${g.id}:${g.weight}`).sort().join(',')
  return members(before) !== members(next)
}

export function registerInternalApi (app: FastifyInstance, ctx: InternalApiContext): void {
  const { migration, ownership } = ctx

  app.get(INTERNAL.map, (_request, reply) => {
    const record = migration.installedMap()
    return reply.send(record ?? { epoch: 0, group: null, map: null })
  })

  app.put(INTERNAL.map, { bodyLimit: MAP_BODY_LIMIT }, (request, reply) => {
    const body = jsonBody(request)
    if (typeof body.group !== 'string') throw new ShardKvError('invalid_request', 'group is required')
    // A MapError is a 400 invalid_request.
    const map = validateMap(body.map)
    if (!map.groups.some((g) => g.id === body.group)) throw new ShardKvError('invalid_request', `group ${body.group as string} is not in the map`)
    const self = typeof body.self === 'string' ? body.self : undefined
    if (self !== undefined && !map.groups.some((g) => g.id === body.group && g.nodes.some((n) => n.url === self))) {
      throw new ShardKvError('invalid_request', `node ${self} is not in group ${body.group as string}`)
    }
    const coordinator = typeof body.coordinator === 'string' ? body.coordinator : undefined
    const fence = fenceOf(body.fence)
    const previous = migration.installedMap()
    const fenced = judgeFence(previous?.fence, fence)
    if (!fenced.ok) throw new ShardKvError('stale_fence', fenced.reason, { fence: previous?.fence })
    // A newer fence is a newer leader, wherever it runs: the installer check is for equals.
    if (ctx.senderChecks && !fenced.newer) {
      const verdict = judgeMapInstaller(previous, { epoch: map.epoch, coordinator })
      if (!verdict.ok) throw new ShardKvError('forbidden', verdict.reason)
    }
    const result = migration.installMap({ epoch: map.epoch, group: body.group, ...(self !== undefined ? { self } : {}), ...(coordinator !== undefined ? { coordinator } : {}), fence, map })
    if (result.staleFence !== undefined) throw new ShardKvError('stale_fence', `fence ${fence} is older than ${result.staleFence}`, { fence: result.staleFence })
    const installed = result.epoch
    if (installed !== map.epoch) {
      throw new ShardKvError('stale_epoch', `epoch ${map.epoch} is older than the installed ${installed}`, { epoch: installed })
    }
    const now = ownership.get()
    if (installed === map.epoch && needsPurge(previous?.map, map)) {
      // A node that missed a rebalance's purge (down at the time, say) must not keep rows
      // it no longer owns: promoted later, it would hold them when the keys come back,
      // and insert-if-absent copies would skip the newer values.
      const deleted = purgeAllForeign(migration, now)
      if (deleted > 0) ctx.log.info({ event: 'foreign-rows-purged', epoch: installed, deleted }, 'purged rows this group no longer owns')
    }
    // A node promoted to primary writes new versions under the group's new term.
    if (now.role === 'primary') ctx.adoptTerm(now.term)
    ctx.onInstalled(installed)
    ctx.log.info({ event: 'map-installed', epoch: installed, group: body.group, role: now.role, term: now.term, handover: map.handover !== undefined }, 'cluster map installed')
    return reply.send({ epoch: installed })
  })

  app.post(INTERNAL.migrationScan, (request, reply) => {
    const body = jsonBody(request)
    const current = ownership.get()
    const after = integer(body.after, 'after', 0, Number.MAX_SAFE_INTEGER)
    const limit = integer(body.limit, 'limit', 1, 10_000, 500)
    const maxBytes = integer(body.maxBytes, 'maxBytes', 1, 64 * 1024 * 1024, 4 * 1024 * 1024)
    if (typeof body.epoch === 'number' && body.epoch !== current.epoch) {
      throw new ShardKvError('stale_epoch', `installed epoch is ${current.epoch}`, { epoch: current.epoch })
    }
    const result = migration.scanMoving(after, limit, (key) => current.isMovingAway(key), maxBytes)
    const answer: WireScanReply = { ...transferToWire(result), next: result.next, scanned: result.scanned, done: result.done, epoch: current.epoch }
    return reply.send(answer)
  })

  app.post(INTERNAL.migrationImport, { bodyLimit: ctx.batchBodyLimit }, async (request, reply) => {
    const body = jsonBody(request)
    // The map is read once, at the first key, inside the import's immediate transaction: no
    // install can commit until the import does, so it holds for every key of the batch.
    let current: Ownership | undefined
    const result = migration.importIfAbsent(transferFromWire(body), (key) => {
      current ??= ownership.get()
      if (current.role !== 'primary' || current.access(key) !== 'owned') throw ownership.misdirected(key, current)
    })
    // Copied rows must be as durable as client writes before the source may purge them.
    if (result.maxSeq > 0) await ctx.replicated(result.maxSeq)
    return reply.send({ inserted: result.inserted, skipped: result.skipped, requests: result.requests })
  })

  app.post(INTERNAL.migrationPurge, (request, reply) => {
    const body = jsonBody(request)
    const current = ownership.get()
    if (typeof body.epoch === 'number' && body.epoch !== current.epoch) {
      throw new ShardKvError('stale_epoch', `installed epoch is ${current.epoch}`, { epoch: current.epoch })
    }
    if (current.epoch === 0 || migration.installedMap() === undefined) {
      throw new ShardKvError('invalid_request', 'no map is installed: nothing is foreign')
    }
    const after = typeof body.after === 'string' ? body.after : ''
    const limit = integer(body.limit, 'limit', 1, 10_000, 500)
    // Purge only what the installed map gives to others and no handover still needs.
    const result = migration.purgeForeign(after, limit, (key) => current.access(key) === 'foreign')
    return reply.send(result)
  })

  app.get(INTERNAL.stats, (_request, reply) => reply.send(ctx.stats()))

  app.get(`${INTERNAL.rowPrefix}*`, (request, reply) => {
    const url = request.raw.url ?? ''
    const q = url.indexOf('?')
    const key = decodeKeySegment(url.slice(INTERNAL.rowPrefix.length, q === -1 ? url.length : q))
    const requestId = (request.query as { request?: unknown }).request
    return reply.send(transferToWire(migration.keyTransfer(key, requestId === undefined ? undefined : requireRequestId(requestId).id)))
  })
}

/** Deletes every row the node does not own under a settled map; returns how many. */
export function purgeAllForeign (migration: MigrationStore, ownership: Ownership): number {
  if (ownership.epoch === 0) return 0
  let after = ''
  let deleted = 0
  for (;;) {
    const batch = migration.purgeForeign(after, 1000, (key) => ownership.access(key) === 'foreign')
    deleted += batch.deleted
    after = batch.next
    if (batch.done) return deleted
  }
}
