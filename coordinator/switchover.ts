import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Logger } from '../src/log'
import { jsonBody } from '../src/http/json-body'
import { ShardKvError } from '../src/protocol/errors'
import { ADMIN, type WireSwitchoverReply } from '../src/protocol/wire'
import { normalizeNodeUrl, primaryOf, termOf, type ClusterMap } from '../src/membership/map'
import { judgeSwitchover } from '../src/replication/policy'
import { promote } from '../src/replication/map-changes'
import type { NodeClient } from '../src/peer/node-client'
import type { NodeStatus } from './health'
import { SWITCHOVER_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'

/**
 * A planned switchover: the primary of a group hands its role to an in-sync replica
 * without a client seeing an error, and without waiting for a lease to run out.
 *
 *  1. hold: the failover monitor stops renewing the primary's lease (and waits for a
 *     grant in flight), so nothing can renew what the next step revokes;
 *  2. fence: the coordinator sets the primary's lease to 0. Writes check the lease
 *     inside their own transaction (shards/data-api.ts), so once the revocation is
 *     written no write can commit there; the position the primary answers with is final.
 *     Clients' writes get a retryable 421 (lease_expired), which the router retries;
 *  3. catch up: the chosen replica — in sync, so it already holds every acknowledged
 *     write — applies the primary's shipments up to that position;
 *  4. handoff: the fenced primary records that the replica takes over term+1 from that
 *     position (checked there in one transaction with its log position);
 *  5. promote under term+1 (one transition: installed on every node, then published).
 *     The old primary is installed as a replica of the new term; the monitor grants the
 *     new primary its first lease at once.
 *
 * At no instant do two nodes acknowledge writes: the old primary stops at step 2, and the
 * new one serves only under a lease the monitor grants after step 4 has published the map.
 * Even a lease renewal that reached the old primary late (after its client-side timeout)
 * could not make it acknowledge a write the new primary lacks: it acknowledges only what
 * its in-sync replicas (the chosen one among them) hold, and the chosen one refuses its
 * shipments once it has the new term's map.
 *
 * The old primary keeps its data: its log is exactly the new primary's up to the handoff
 * position, so the new primary's first shipment finds it there (keepsDataAfterHandoff in
 * src/replication/policy.ts) and it is marked in-sync again as soon as it has caught up —
 * no resync. Should the handoff not be recorded (the call failed), it resyncs from empty,
 * as after a failover: slower, equally safe.
 */

export interface SwitchoverContext {
  map: () => ClusterMap
  transition: (reason: string, compute: (current: ClusterMap) => ClusterMap) => Promise<ClusterMap>
  nodes: NodeClient
  statusOf: (url: string) => NodeStatus
  leases: { hold: (group: string) => Promise<void>, release: (group: string) => void }
  rebalancing: () => boolean
  log: Logger
  /** How long the replica may take to reach the fenced primary's position before the switchover is abandoned. */
  catchUpTimeoutMs: number
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export class Switchover {
  private readonly running = new Set<string>()

  constructor (private readonly ctx: SwitchoverContext) {}

  /** A switchover is under way (a rebalance waits for it: its copies would move the fenced primary's log). */
  isRunning (): boolean {
    return this.running.size > 0
  }

  async run (groupId: string, rawTo: string | undefined): Promise<WireSwitchoverReply> {
    const to = rawTo === undefined ? undefined : normalizeNodeUrl(rawTo)
    const group = this.ctx.map().groups.find((g) => g.id === groupId)
    const decision = judgeSwitchover({
      nodes: group?.nodes,
      to,
      busy: this.ctx.rebalancing() ? 'rebalance' : this.running.has(groupId) ? 'switchover' : undefined,
      healthy: (url) => this.ctx.statusOf(url).health === 'up'
    })
    if (!decision.ok) throw new ShardKvError(decision.code, `cannot switch over ${groupId}: ${decision.reason}`)
    if (group === undefined) throw new ShardKvError('no_such_group', `group ${groupId} does not exist`)
    const term = termOf(group)
    this.running.add(groupId)
    const started = Date.now()
    try {
      await this.ctx.leases.hold(groupId)
      const position = await this.fence(groupId, decision.from, term)
      await this.catchUp(groupId, decision.to, position)
      await this.handoff(groupId, decision.from, decision.to, term, position)
      const next = await this.promote(groupId, decision.from, decision.to, term)
      const reply: WireSwitchoverReply = { group: groupId, from: decision.from, to: decision.to, term: term + 1, epoch: next.epoch, position, tookMs: Date.now() - started }
      this.ctx.log.warn({ event: 'switchover', ...reply }, `switched ${groupId} over from ${decision.from} to ${decision.to} (term ${term + 1})`)
      return reply
    } finally {
      // On success the monitor starts a lease for the new primary; on failure it renews the old one's.
      this.ctx.leases.release(groupId)
      this.running.delete(groupId)
    }
  }

  /** Revokes the primary's lease; resolves with its final position. */
  private async fence (groupId: string, primary: string, term: number): Promise<number> {
    try {
      const answer = await this.ctx.nodes.lease(primary, groupId, term, 0, 5000)
      this.ctx.log.info({ event: 'switchover-fenced', group: groupId, primary, term, position: answer.position }, 'primary fenced for a switchover')
      return answer.position
    } catch (err) {
      throw new ShardKvError('unavailable', `could not fence the primary ${primary}: ${(err as Error).message}; it keeps its role`)
    }
  }

  /** Waits until the replica has applied everything up to `position`. */
  private async catchUp (groupId: string, replica: string, position: number): Promise<void> {
    const deadline = Date.now() + this.ctx.catchUpTimeoutMs
    let last: number | undefined
    for (;;) {
      try {
        last = (await this.ctx.nodes.health(replica)).position
        if (last >= position) return
      } catch {
        // A missed answer is judged like a slow one: by the deadline.
      }
      if (Date.now() > deadline) {
        throw new ShardKvError('unavailable', `the replica ${replica} did not reach position ${position} (at ${last ?? 'unknown'}) within ${this.ctx.catchUpTimeoutMs} ms; ${groupId} keeps its primary`)
      }
      await sleep(10)
    }
  }

  /** Best effort: without the record the old primary resyncs, which costs time, not safety. */
  private async handoff (groupId: string, from: string, to: string, term: number, position: number): Promise<void> {
    try {
      await this.ctx.nodes.handoff(from, { group: groupId, term, nextTerm: term + 1, primary: to, position })
    } catch (err) {
      this.ctx.log.warn({ event: 'handoff-failed', group: groupId, primary: from, err: (err as Error).message }, 'the old primary could not record the handoff; it will resync from the new primary')
    }
  }

  /**
   * Promotes the replica, from the state judged at the start only. An install that failed
   * part way is tried again (the same map: a node that has it answers with its epoch).
   */
  private async promote (groupId: string, from: string, to: string, term: number): Promise<ClusterMap> {
    const compute = (current: ClusterMap): ClusterMap => {
      const g = current.groups.find((x) => x.id === groupId)
      if (g === undefined) throw new ShardKvError('no_such_group', `group ${groupId} no longer exists`)
      if (termOf(g) === term + 1 && primaryOf(current, groupId)?.url === to) return current
      if (termOf(g) !== term || primaryOf(current, groupId)?.url !== from) throw new ShardKvError('conflict', `group ${groupId} changed during the switchover`)
      if (g.nodes.find((n) => n.url === to)?.inSync !== true) throw new ShardKvError('conflict', `${to} left the in-sync set during the switchover`)
      return promote(current, groupId, to)
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.ctx.transition(`switchover of ${groupId}: ${from} -> ${to}`, compute)
      } catch (err) {
        if (err instanceof ShardKvError || attempt >= 3) throw err
        this.ctx.log.warn({ event: 'switchover-install-retry', group: groupId, attempt, err: (err as Error).message }, 'installing the switchover map failed; trying again')
      }
    }
  }
}

/** The body is optional: none (or `{}`) lets the coordinator pick the replica. */
function switchoverTarget (request: FastifyRequest): string | undefined {
  const raw = request.body
  if (request.headers['content-type'] === undefined && (raw === undefined || raw === null || (Buffer.isBuffer(raw) && raw.length === 0))) return undefined
  const body = jsonBody(request)
  for (const k of Object.keys(body)) if (k !== 'to') throw new ShardKvError('invalid_request', `unknown field ${JSON.stringify(k).slice(0, 40)} (the body is {"to": "<replica url>"})`)
  if (body.to !== undefined && typeof body.to !== 'string') throw new ShardKvError('invalid_request', 'to must be a replica\'s data url')
  return body.to
}

export function registerSwitchoverRoute (app: FastifyInstance, switchover: Switchover): void {
  app.post(`${ADMIN.groups}/:id/switchover`, documented(SWITCHOVER_SCHEMA), async (request, reply) => {
    const { id } = request.params as { id: string }
    const to = switchoverTarget(request)
    return await reply.send(await switchover.run(id, to))
  })
}
