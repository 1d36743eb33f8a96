import type { FastifyInstance } from 'fastify'
import { INTERNAL_REPLICATION, type WireLeaseReply } from '../src/protocol/wire'
import { normalizeNodeUrl } from '../src/membership/map'
import { ShardKvError } from '../src/protocol/errors'
import { judgeShipment, keepsDataAfterHandoff } from '../src/replication/policy'
import type { KvStore } from '../src/storage/store'
import { shipmentFromWire } from '../src/protocol/log-codec'
import type { ReplicaStore } from '../src/storage/replica-store'
import type { OwnershipCache } from './ownership-cache'
import type { Logger } from '../src/log'
import { jsonBody, integer } from '../src/http/json-body'
import { judgeLeaseGrantor, judgeShipmentSender } from '../src/auth/senders'
import { fenceOf, judgeFence } from '../src/registry/fence'
import type { MigrationStore } from '../src/storage/migration-store'
import { ApplyQueue } from './apply-queue'

/**
 * The receiving end of replication on a replica node, and the lease a primary holds.
 * A shipment is applied only from the primary of the group's current term, and only
 * when it continues exactly where this replica stands — or where the shipments queued
 * for the next group commit end (apply-queue.ts), which the commit checks again.
 *
 * A shipment names its sender (the primary's URL in the map). One from a node that is
 * not the group's primary in this replica's installed map is refused 409 `stale_term`,
 * not 403: between peers that hold the secret the usual cause is honest — maps reach
 * nodes at different moments — and it is the answer a deposed primary already gets for
 * its old term; nothing is applied either way.
 */

export interface ReplicationApiContext {
  store: KvStore
  replica: ReplicaStore
  ownership: OwnershipCache
  log: Logger
  batchBodyLimit: number
  migration: MigrationStore
  /** Check who grants leases (only with a cluster secret; see internal-api.ts). */
  senderChecks: boolean
}

export function registerReplicationApi (app: FastifyInstance, ctx: ReplicationApiContext): void {
  const { store, replica, ownership } = ctx
  /** Leases and handoffs: only from the installed map's coordinator (with a secret), only to this group's primary at `term`. */
  const requireCoordinatorsPrimary = (body: Record<string, unknown>, term: number): void => {
    const installed = ctx.migration.installedMap()
    const fenced = judgeFence(installed?.fence, fenceOf(body.fence))
    if (!fenced.ok) throw new ShardKvError('stale_fence', fenced.reason, { fence: installed?.fence })
    if (ctx.senderChecks && !fenced.newer) {
      const verdict = judgeLeaseGrantor(installed, body.coordinator)
      if (!verdict.ok) throw new ShardKvError('forbidden', verdict.reason)
    }
    const current = ownership.get()
    if (current.role !== 'primary' || term !== current.term || body.group !== current.group) {
      throw new ShardKvError('stale_term', `not the primary of ${String(body.group)} at term ${term}`, { term: current.term })
    }
  }

  // Pipelined shipments are committed in groups (apply-queue.ts); the commit checks again
  // that the replica still takes shipments of the term, group and sender they were judged for.
  const queue = new ApplyQueue(replica, (term, group, sender) => {
    const current = ownership.get()
    if (current.role !== 'replica' || current.group !== group || current.term !== term || store.currentTerm() !== term) return false
    return judgeShipmentSender(sender, current.peers.find((p) => p.role === 'primary')?.url).ok
  })

  app.post(INTERNAL_REPLICATION.apply, { bodyLimit: ctx.batchBodyLimit }, (request, reply) => {
    const body = jsonBody(request)
    const term = integer(body.term, 'term', 1, Number.MAX_SAFE_INTEGER)
    const from = integer(body.from, 'from', -1, Number.MAX_SAFE_INTEGER)
    const current = ownership.get()
    if (current.role !== 'replica' || body.group !== current.group) {
      throw new ShardKvError('not_replica', `this node is not a replica of ${String(body.group)} at epoch ${current.epoch}`, { term: current.term })
    }
    // from = -1 is a probe: "where do you stand?" (after the same term checks).
    const probe = from === -1
    const primary = current.peers.find((p) => p.role === 'primary')?.url
    const sender = judgeShipmentSender(body.sender, primary)
    if (!sender.ok) throw new ShardKvError('stale_term', sender.reason, { term: current.term })
    const shipped = { group: current.group, term, sender: typeof body.sender === 'string' ? body.sender : undefined, from }
    if (!probe && queue.continues(shipped)) {
      // Continues the shipments waiting for their commit: joins them, answered with them.
      queue.push({ ...shipped, shipment: shipmentFromWire(body, integer(body.to, 'to', from, Number.MAX_SAFE_INTEGER)), reply })
      return
    }
    // Anything else is judged against the replica's real position: commit what waits first.
    queue.flush()
    let verdict = judgeShipment({ term, from: probe ? replica.position() : from }, { groupTerm: current.term, dataTerm: store.currentTerm(), position: replica.position() })
    if (verdict === 'resync' && keepsDataAfterHandoff(replica.handoff(), { term }, { primary, position: replica.position() })) {
      // A planned switchover's old primary: its log is the new primary's up to here.
      ctx.log.info({ event: 'replica-kept-data', term, dataTerm: store.currentTerm(), position: replica.position() }, 'handed over exactly at this position: keeping the data, no resync')
      replica.takeHandoff(term)
      verdict = judgeShipment({ term, from: probe ? replica.position() : from }, { groupTerm: current.term, dataTerm: store.currentTerm(), position: replica.position() })
    }
    switch (verdict) {
      case 'reject':
        throw new ShardKvError('stale_term', `the group is at term ${current.term}`, { term: current.term })
      case 'resync':
        ctx.log.warn({ event: 'replica-resync', term, dataTerm: store.currentTerm(), position: replica.position() }, 'data from an older term: full resync')
        replica.wipe(term)
        if (probe) return reply.send({ position: 0 })
        throw new ShardKvError('gap', 'resyncing from empty', { position: 0 })
      case 'gap':
        throw new ShardKvError('gap', `this replica is at ${replica.position()}`, { position: replica.position() })
      case 'apply': {
        if (probe) return reply.send({ position: replica.position() })
        const to = integer(body.to, 'to', from, Number.MAX_SAFE_INTEGER)
        queue.push({ ...shipped, shipment: shipmentFromWire(body, to), reply })
        return
      }
    }
  })

  // A planned switchover, after the new primary caught up with this fenced one (router/switchover.ts).
  app.post(INTERNAL_REPLICATION.handoff, (request, reply) => {
    const body = jsonBody(request)
    const term = integer(body.term, 'term', 1, Number.MAX_SAFE_INTEGER)
    const nextTerm = integer(body.nextTerm, 'nextTerm', term + 1, term + 1)
    const position = integer(body.position, 'position', 0, Number.MAX_SAFE_INTEGER)
    const primary = normalizeNodeUrl(body.primary)
    requireCoordinatorsPrimary(body, term)
    // Only a fenced primary: one that may still write could move past `position`.
    if (Date.now() < store.fence().leaseUntil) throw new ShardKvError('conflict', 'this primary still holds a lease')
    if (!replica.recordHandoff({ term: nextTerm, primary, position })) throw new ShardKvError('conflict', `this node is at ${store.position()}, not ${position}`)
    ctx.log.info({ event: 'handoff-recorded', nextTerm, primary, position }, 'fenced for a switchover: will keep its data as a replica of the next term')
    return reply.send({ position })
  })

  app.post(INTERNAL_REPLICATION.lease, (request, reply) => {
    const body = jsonBody(request)
    const term = integer(body.term, 'term', 1, Number.MAX_SAFE_INTEGER)
    const until = integer(body.leaseUntil, 'leaseUntil', 0, Number.MAX_SAFE_INTEGER)
    requireCoordinatorsPrimary(body, term)
    replica.setLease(until)
    const answer: WireLeaseReply = { leaseUntil: until, position: store.position() }
    return reply.send(answer)
  })
}
