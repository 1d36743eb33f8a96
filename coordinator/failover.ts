import type { Logger } from '../src/log'
import { primaryOf, termOf, type ClusterMap } from '../src/membership/map'
import { choosePromotion, leaseStep, nextLeaseRoundMs, renewalIntervalMs, type LeaseStep } from '../src/replication/policy'
import { promote } from '../src/replication/map-changes'
import type { NodeClient } from '../src/peer/node-client'
import type { NodeStatus } from './health'

/**
 * Leases and failover, in the coordinator. Four times per lease (renewalIntervalMs) it
 * grants each primary that has replicas a lease until now + leaseMs, stamped before the
 * grant is sent; a primary serves clients only while it holds one (the clock reasoning
 * is in src/replication/policy.ts). When a primary fails a renewal and the last lease it
 * may hold has ended, it can no longer serve anything: after one last probe, the in-sync
 * replica with the highest position is promoted under a new term, and granted its first
 * lease before the map is published, so routers that learn of it find it serving.
 *
 * A dead primary refuses connections: its renewals certainly never arrive, so its last
 * lease stays where it was and the round right after that lease's end replaces it (at
 * most leaseMs after the death). A frozen or cut-off one lets grants time out: each may
 * have arrived and extends the count, so after `missedChecks` of them the coordinator
 * stops granting and lets the last one run out.
 */

export interface FailoverOptions {
  map: () => ClusterMap
  /** Coordinator.transition; `beforePublish` runs once the map is installed on the nodes, before routers see it. */
  transition: (reason: string, compute: (current: ClusterMap) => ClusterMap, beforePublish?: (next: ClusterMap) => Promise<void>) => Promise<ClusterMap>
  statusOf: (url: string) => NodeStatus
  /** Records that a node did not answer (the health checker's view until its next check). */
  markDown: (url: string, why: string) => void
  nodes: NodeClient
  log: Logger
  leaseMs: number
  missedChecks: number
  onFailover?: (group: string, from: string, to: string, term: number) => void
}

type GrantOutcome = 'ok' | 'refused' | 'uncertain'

interface GroupLease {
  primary: string
  term: number
  /** The latest lease sent (whether or not it arrived): the primary may hold it. */
  until: number
  failures: number
  firstFailureAt: number | undefined
  waitingLogged: boolean
  /** A grant to this primary at this term has been taken (its first one is logged). */
  granted: boolean
}

export class FailoverMonitor {
  private readonly leases = new Map<string, GroupLease>()
  /** Groups in a planned switchover: no lease grants and no failover until released. */
  private readonly held = new Set<string>()
  /** Grants sent by release(), outside the rounds: hold() waits for them as for a round. */
  private readonly releaseGrants = new Map<string, Promise<unknown>>()
  /**
   * Promotions under way, outside the rounds: a transition can take a while (an install
   * to a frozen node waits out its timeout) and the other groups' renewals must not wait
   * for it, or their leases would run out too.
   */
  private readonly failovers = new Map<string, Promise<void>>()
  /** A restarted coordinator does not know what its previous run granted: assume a lease from now. */
  private readonly startedAt = Date.now()
  /** Renewals per lease: see renewalIntervalMs. Also the time a grant or probe may take. */
  private readonly intervalMs: number
  private timer: NodeJS.Timeout | undefined
  private tick: Promise<void> | undefined
  private stopped = false

  constructor (private readonly opts: FailoverOptions) {
    this.intervalMs = renewalIntervalMs(opts.leaseMs)
  }

  start (): void {
    if (this.stopped || this.timer !== undefined) return
    const loop = (): void => {
      this.tick = this.round().catch((err: Error) => {
        this.opts.log.error({ event: 'failover-round-failed', err: err.message }, 'failover round failed')
      }).finally(() => {
        this.tick = undefined
        if (!this.stopped) {
          this.timer = setTimeout(loop, this.nextRoundMs())
          this.timer.unref()
        }
      })
    }
    loop()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    await this.tick
    await Promise.all(this.failovers.values())
  }

  /**
   * Stops granting leases to the group's primary (and failing it over) and resolves once
   * no grant is in flight: after this, a lease the coordinator sets on the primary (a
   * revocation) cannot be overtaken by a renewal from a round that was already running.
   */
  async hold (groupId: string): Promise<void> {
    this.held.add(groupId)
    await Promise.all([this.tick, this.releaseGrants.get(groupId), this.failovers.get(groupId)])
  }

  /**
   * Resumes leases for the group, granting one at once: clients' writes wait (retried 421s)
   * until the primary in the current map — the promoted one, or the old one after an
   * abandoned switchover — holds a lease, and the next round may be an interval away.
   */
  release (groupId: string): void {
    this.held.delete(groupId)
    this.leases.delete(groupId)
    const map = this.opts.map()
    const group = map.groups.find((g) => g.id === groupId)
    const primary = primaryOf(map, groupId)
    if (this.stopped || group === undefined || primary === undefined || group.nodes.length < 2) return
    const lease = this.leaseFor(groupId, primary.url, termOf(group))
    const granting = this.grant(groupId, lease).finally(() => {
      if (this.releaseGrants.get(groupId) === granting) this.releaseGrants.delete(groupId)
    })
    this.releaseGrants.set(groupId, granting)
  }

  private leaseFor (groupId: string, primary: string, term: number): GroupLease {
    let lease = this.leases.get(groupId)
    if (lease === undefined || lease.primary !== primary || lease.term !== term) {
      lease = { primary, term, until: this.startedAt + this.opts.leaseMs, failures: 0, firstFailureAt: undefined, waitingLogged: false, granted: false }
      this.leases.set(groupId, lease)
    }
    return lease
  }

  private async round (): Promise<void> {
    const map = this.opts.map()
    const live = new Set<string>()
    await Promise.all(map.groups.filter((g) => g.nodes.length > 1).map(async (g) => {
      live.add(g.id)
      if (this.held.has(g.id) || this.failovers.has(g.id)) return
      const primary = primaryOf(map, g.id)
      if (primary !== undefined) await this.tend(g.id, this.leaseFor(g.id, primary.url, termOf(g)))
    }))
    for (const id of this.leases.keys()) if (!live.has(id)) this.leases.delete(id)
  }

  /**
   * One group's turn in a round. A renewal that fails just after the lease it would have
   * extended ended (the round began a moment before that end) is followed by the
   * decision at once, rather than a whole interval later.
   */
  private async tend (groupId: string, lease: GroupLease): Promise<void> {
    const outcome = await this.step(groupId, lease)
    if (outcome !== 'ok' && outcome !== 'done' && this.stepOf(lease) === 'probe') await this.step(groupId, lease)
  }

  private stepOf (lease: GroupLease): LeaseStep {
    return leaseStep({
      failures: lease.failures,
      threshold: this.opts.missedChecks,
      until: lease.until,
      answeredSince: this.answeredSince(lease.primary, lease.firstFailureAt)
    }, Date.now())
  }

  /** Renew, wait, or probe and fail over (leaseStep); 'done' when nothing was granted. */
  private async step (groupId: string, lease: GroupLease): Promise<GrantOutcome | 'done'> {
    // A round that was running when the monitor stopped decides nothing more: its calls may have been given up.
    if (this.stopped) return 'done'
    const step = this.stepOf(lease)
    // Stop granting: let the last lease the primary may hold run out.
    if (step === 'wait') return 'done'
    if (step === 'resume') {
      // It was only slow: granting it the next lease is as safe as any renewal.
      this.opts.log.info({ event: 'primary-recovered', group: groupId, primary: lease.primary }, 'primary answers again; resuming its lease')
      lease.failures = 0
      lease.firstFailureAt = undefined
    }
    if (step === 'probe') {
      // A last probe decides: a lease that ends now grants nothing, so whatever happens
      // to it the expiry stands. A primary that answers is back (no failover, a real
      // lease follows); one that does not is replaced.
      const why = await this.answers(groupId, lease)
      if (this.stopped) return 'done'
      if (why !== undefined) {
        // As a failed health check would: the promotion's install does not wait on it.
        this.opts.markDown(lease.primary, `lease probe: ${why}`)
        this.startFailOver(groupId, lease)
        return 'done'
      }
      this.opts.log.info({ event: 'primary-recovered', group: groupId, primary: lease.primary }, 'primary answers again; no failover')
      lease.failures = 0
      lease.firstFailureAt = undefined
      lease.waitingLogged = false
    }
    return await this.grant(groupId, lease)
  }

  /** Until the next round: a renewal interval, or just past the end of a failing primary's lease. */
  private nextRoundMs (): number {
    const failing: number[] = []
    for (const [id, lease] of this.leases) if (lease.failures > 0 && !this.held.has(id) && !this.failovers.has(id)) failing.push(lease.until)
    return nextLeaseRoundMs(Date.now(), this.intervalMs, failing)
  }

  /** Undefined when the primary answers a lease that grants nothing; else why not. */
  private async answers (groupId: string, lease: GroupLease): Promise<string | undefined> {
    try {
      await this.opts.nodes.lease(lease.primary, groupId, lease.term, Date.now(), this.intervalMs)
      return undefined
    } catch (err) {
      return (err as Error).message
    }
  }

  /** Grants a lease; 'refused' only when it certainly never reached the primary. */
  private async grant (groupId: string, lease: GroupLease): Promise<GrantOutcome> {
    const until = Date.now() + this.opts.leaseMs
    const held = lease.until
    lease.until = Math.max(lease.until, until)
    try {
      await this.opts.nodes.lease(lease.primary, groupId, lease.term, until, this.intervalMs)
      lease.failures = 0
      lease.firstFailureAt = undefined
      lease.waitingLogged = false
      if (!lease.granted) this.opts.log.info({ event: 'lease-granted', group: groupId, primary: lease.primary, term: lease.term }, 'the primary holds its first lease of this term')
      lease.granted = true
      return 'ok'
    } catch (err) {
      if (this.stopped) return 'uncertain'
      lease.failures++
      lease.firstFailureAt ??= Date.now()
      if (lease.failures === 1) this.opts.log.warn({ event: 'lease-failed', group: groupId, primary: lease.primary, term: lease.term, err: (err as Error).message }, 'could not renew the primary\'s lease')
      if (neverDelivered(err)) {
        // Unless another grant (release()'s) raised the count meanwhile: that one may have arrived.
        if (lease.until === until) lease.until = held
        return 'refused'
      }
      return 'uncertain'
    }
  }

  /** True when a health check after `since` found the node up. */
  private answeredSince (url: string, since: number | undefined): boolean {
    const s = this.opts.statusOf(url)
    return since !== undefined && s.health === 'up' && s.lastCheckAt !== null && Date.parse(s.lastCheckAt) > since + 1
  }

  /** Runs failOver beside the rounds; a failed one is tried again by the next round (the lease is still over). */
  private startFailOver (groupId: string, lease: GroupLease): void {
    const running = this.failOver(groupId, lease).then(() => undefined, (err: Error) => {
      this.opts.log.error({ event: 'failover-failed', group: groupId, primary: lease.primary, err: err.message }, 'failover failed; the next round tries again')
    }).finally(() => { this.failovers.delete(groupId) })
    this.failovers.set(groupId, running)
  }

  /** Promotes a replica of the group; false when none qualifies. */
  private async failOver (groupId: string, lease: GroupLease): Promise<boolean> {
    const map = this.opts.map()
    const group = map.groups.find((g) => g.id === groupId)
    if (group === undefined) return false
    const candidates = group.nodes.filter((n) => n.role === 'replica').map((n) => {
      const s = this.opts.statusOf(n.url)
      return { url: n.url, inSync: n.inSync === true, healthy: s.health === 'up', position: s.position }
    })
    const chosen = choosePromotion(candidates)
    if (chosen === undefined) {
      if (!lease.waitingLogged) {
        this.opts.log.error({ event: 'failover-blocked', group: groupId, primary: lease.primary, candidates }, 'primary is down and no in-sync, healthy replica can take over; waiting')
        lease.waitingLogged = true
      }
      return false
    }
    const started = Date.now()
    const next = await this.opts.transition(`failover of ${groupId}: ${lease.primary} -> ${chosen}`, (current) => {
      const g = current.groups.find((x) => x.id === groupId)
      // Another transition may have changed the group meanwhile; only promote from the state we judged.
      if (g === undefined || termOf(g) !== lease.term || primaryOf(current, groupId)?.url !== lease.primary) return current
      // Nor if the chosen replica left the in-sync set while this transition waited its turn.
      if (g.nodes.find((n) => n.url === chosen)?.inSync !== true) return current
      return promote(current, groupId, chosen)
    }, async (installed) => {
      // The old primary's lease has ended: the new one may hold one at once. Granted before
      // routers learn of it, so their first retry finds it serving, not a 421.
      const g = installed.groups.find((x) => x.id === groupId)
      if (g !== undefined && primaryOf(installed, groupId)?.url === chosen) await this.grant(groupId, this.leaseFor(groupId, chosen, termOf(g)))
    })
    const promotedGroup = next.groups.find((g) => g.id === groupId)
    if (promotedGroup === undefined || primaryOf(next, groupId)?.url !== chosen) return false
    const term = termOf(promotedGroup)
    this.opts.log.warn({
      event: 'failover',
      group: groupId,
      from: lease.primary,
      to: chosen,
      term,
      epoch: next.epoch,
      leaseUntil: new Date(lease.until).toISOString(),
      downForMs: lease.firstFailureAt !== undefined ? Date.now() - lease.firstFailureAt : undefined,
      transitionMs: Date.now() - started
    }, `promoted ${chosen} to primary of ${groupId} (term ${term})`)
    this.opts.onFailover?.(groupId, lease.primary, chosen, term)
    return true
  }
}

function neverDelivered (err: unknown): boolean {
  const code = (err as { code?: unknown, cause?: { code?: unknown } }).code
  const cause = (err as { cause?: { code?: unknown } }).cause?.code
  return code === 'ECONNREFUSED' || cause === 'ECONNREFUSED'
}
