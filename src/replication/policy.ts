/**
 * Replication decisions, without I/O.
 *
 * A primary acknowledges a write at seq n only when every replica in its ack set has
 * durably applied n. The ack set is the map's in-sync replicas plus any replica the
 * primary has asked the coordinator to mark in-sync: it starts waiting for such a
 * replica the moment it asks (the replica has caught up by then), so no write is
 * acknowledged without a replica that the coordinator may promote. Dropping a replica
 * from the set goes the other way round: only after the coordinator's map says so.
 */

export interface ReplicaAck {
  url: string
  /** Highest seq the replica has durably applied (-1: unknown yet). */
  acked: number
}

/** The highest seq acknowledged by every replica in `ackSet` (the primary's own position when empty). */
export function replicatedPosition (primaryPosition: number, acks: readonly ReplicaAck[], ackSet: ReadonlySet<string>): number {
  let min = primaryPosition
  for (const a of acks) {
    if (!ackSet.has(a.url)) continue
    if (a.acked < min) min = a.acked
  }
  return min
}

export interface ReplicaObservation {
  url: string
  inSync: boolean
  healthy: boolean
  /** Replication position the node last reported (null: unknown). */
  position: number | null
}

/**
 * Which replica to promote when a primary is lost: an in-sync, healthy one with the
 * highest position (ties broken by url, so every coordinator picks the same).
 * Undefined when none qualifies: promoting a replica that is not in sync could lose
 * acknowledged writes, so the group waits instead.
 */
export function choosePromotion (replicas: readonly ReplicaObservation[]): string | undefined {
  let best: ReplicaObservation | undefined
  for (const r of replicas) {
    if (!r.inSync || !r.healthy || r.position === null) continue
    if (best === undefined || r.position > (best.position as number) || (r.position === best.position && r.url < best.url)) best = r
  }
  return best?.url
}

/**
 * Leases, as the coordinator counts them. A grant carries an absolute deadline that the
 * coordinator stamps *before* it sends it (now + leaseMs), and the primary serves only
 * while its own clock reads less than that deadline (shards/serving.ts). On one clock
 * (every process of a local cluster, or hosts kept in sync) the primary therefore stops
 * no later than the coordinator's count, however late the grant arrived: a grant delayed
 * in flight carries an old deadline, it cannot stretch the lease. (Counting a duration
 * from when the primary *received* the grant would be wrong: it would outlive the
 * coordinator's count by the delivery delay.) So the coordinator's `until` is the latest
 * instant any lease it sent can hold: the highest deadline among grants that may have
 * arrived; a grant whose connection was refused certainly did not.
 */

/**
 * How often the coordinator renews a primary's lease: four times per lease, so a primary
 * keeps serving through three renewals lost or late in a row (a busy machine, a long
 * pause), and a dead primary's last lease ends at most leaseMs after its death.
 */
export function renewalIntervalMs (leaseMs: number): number {
  return Math.max(25, Math.floor(leaseMs / 4))
}

/**
 * Whether the coordinator may promote a replica over the primary: it failed its latest
 * renewal (it has not answered since) AND the last lease it may hold has ended, so it
 * can no longer serve anything on its own authority. Decided from the lease's end, not
 * from a count of missed renewals: a refused connection is no proof that the primary's
 * workers are gone, but once the lease ended they refuse every request anyway.
 */
export function mayFailOver (failures: number, leaseUntil: number, now: number): boolean {
  return failures > 0 && now > leaseUntil
}

export interface LeaseObservation {
  /** Lease renewals in a row the primary did not take. */
  failures: number
  /** Missed renewals after which the coordinator stops granting (--failover-after). */
  threshold: number
  /** The latest any lease the primary may hold lasts (ms since the epoch). */
  until: number
  /** A health check found the primary up after its first missed renewal. */
  answeredSince: boolean
}

/**
 * The coordinator's step for one group's primary, each lease round:
 *  - renew:  grant the next lease as usual (also after a miss or two: a grant that
 *            certainly did not arrive extends nothing, one that may have arrived does);
 *  - resume: it missed renewals but has answered since (it was only slow): count afresh and renew;
 *  - wait:   it missed `threshold` renewals whose fate is unknown (timeouts: a frozen or
 *            cut-off primary): grant nothing more, let the last lease it may hold run out;
 *  - probe:  it is failing and that lease has ended: one last probe decides between
 *            resuming and failing over.
 */
export type LeaseStep = 'renew' | 'resume' | 'wait' | 'probe'

export function leaseStep (o: LeaseObservation, now: number): LeaseStep {
  if (o.failures === 0) return 'renew'
  if (o.answeredSince) return 'resume'
  if (mayFailOver(o.failures, o.until, now)) return 'probe'
  return o.failures >= o.threshold ? 'wait' : 'renew'
}

/**
 * When the next lease round is due: one renewal interval on, or just past the end of the
 * lease of a primary that is failing, whichever comes first, so a dead primary is
 * replaced as soon as its lease has ended rather than up to an interval later.
 */
export function nextLeaseRoundMs (now: number, intervalMs: number, failingUntils: readonly number[]): number {
  let next = intervalMs
  for (const until of failingUntils) {
    const due = until + 1 - now
    if (due > 0 && due < next) next = due
  }
  return next
}

/**
 * What a replica must do with a shipment from a primary.
 *  - apply:  same term, contiguous with what it has
 *  - resync: its data came from an older term's primary: anything past the fork may be
 *            writes that were never acknowledged, so it starts again from empty
 *  - reject: the sender's term is older than the replica's: a deposed primary (fenced)
 *  - gap:    same term but not contiguous: tell the primary where it stands
 */
export type ShipmentVerdict = 'apply' | 'resync' | 'reject' | 'gap'

/**
 * What a primary fenced for a planned switchover records before the promotion: the term
 * and the node that will take over, and the position both hold (the new primary caught
 * up to it; the fenced one can write nothing past it).
 */
export interface Handoff {
  term: number
  primary: string
  position: number
}

/**
 * Whether a replica whose data is from an older term may keep it for `shipment` instead
 * of resyncing: only when it recorded a handoff to exactly this term and this primary
 * and still stands exactly at the handoff position. Its rows up to there are then the
 * new primary's rows up to there (one primary's log, in one term, shipped in order). A
 * later write on it (an abandoned switchover) moves its position, another node promoted
 * to that term has another log: both resync as after any failover.
 */
export function keepsDataAfterHandoff (handoff: Handoff | undefined, shipment: { term: number }, replica: { primary: string | undefined, position: number }): boolean {
  return handoff !== undefined && handoff.term === shipment.term && handoff.primary === replica.primary && handoff.position === replica.position
}

export function judgeShipment (shipment: { term: number, from: number }, replica: { groupTerm: number, dataTerm: number, position: number }): ShipmentVerdict {
  if (shipment.term < replica.groupTerm) return 'reject'
  if (shipment.term > replica.groupTerm) return 'reject'
  if (replica.dataTerm !== shipment.term) return 'resync'
  if (shipment.from !== replica.position) return 'gap'
  return 'apply'
}

/** What the coordinator knows when an operator asks for a planned switchover. */
export interface SwitchoverState {
  /** The group's nodes as the map lists them (undefined: no such group). */
  nodes: ReadonlyArray<{ url: string, role: 'primary' | 'replica', inSync?: boolean }> | undefined
  /** The replica the operator named (`to`), if any (normalized). */
  to: string | undefined
  /** A rebalance is running, or another switchover of this group is. */
  busy: 'rebalance' | 'switchover' | undefined
  /** Whether the health checker last saw each node up. */
  healthy: (url: string) => boolean
}

export type SwitchoverDecision =
  | { ok: true, from: string, to: string }
  | { ok: false, code: 'no_such_group' | 'conflict' | 'rebalance_running' | 'invalid_request', reason: string }

/**
 * Whether a planned switchover may start, and to whom. Only an in-sync, healthy replica
 * may take over: it holds every acknowledged write, so catching up to the fenced
 * primary's final position is a short wait, never a resync. Without `to` the choice is
 * the first such replica by url (any in-sync replica is as good: the catch-up levels them).
 */
export function judgeSwitchover (s: SwitchoverState): SwitchoverDecision {
  if (s.nodes === undefined) return { ok: false, code: 'no_such_group', reason: 'the group does not exist' }
  if (s.busy === 'rebalance') return { ok: false, code: 'rebalance_running', reason: 'a rebalance is running; switch over when it has finished' }
  if (s.busy === 'switchover') return { ok: false, code: 'conflict', reason: 'a switchover of this group is already running' }
  const primary = s.nodes.find((n) => n.role === 'primary')
  if (primary === undefined) return { ok: false, code: 'conflict', reason: 'the group has no primary' }
  if (!s.healthy(primary.url)) return { ok: false, code: 'conflict', reason: `the primary ${primary.url} is not up (a failover, not a switchover, replaces a lost primary)` }
  const replicas = s.nodes.filter((n) => n.role === 'replica')
  if (replicas.length === 0) return { ok: false, code: 'conflict', reason: 'the group has no replica to switch over to' }
  if (s.to !== undefined) {
    const named = replicas.find((n) => n.url === s.to)
    if (named === undefined) return { ok: false, code: 'invalid_request', reason: `${s.to} is not a replica of the group` }
    if (named.inSync !== true) return { ok: false, code: 'conflict', reason: `${s.to} is not in sync` }
    if (!s.healthy(named.url)) return { ok: false, code: 'conflict', reason: `${s.to} is not up` }
    return { ok: true, from: primary.url, to: named.url }
  }
  const eligible = replicas.filter((n) => n.inSync === true && s.healthy(n.url)).map((n) => n.url).sort()
  if (eligible.length === 0) return { ok: false, code: 'conflict', reason: 'the group has no in-sync, healthy replica' }
  return { ok: true, from: primary.url, to: eligible[0] as string }
}
