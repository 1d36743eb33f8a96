import type { ClusterView, GroupView } from '../../src/protocol/cluster-view'
import type { DashboardOperation } from '../../src/protocol/dashboard'

/**
 * The switchovers, failovers and replica changes the dashboard shows, as they happen.
 *
 * A switchover is seen through its admin call (the dashboard hooks the route: started when
 * the handler runs, finished with its answer). Everything else is read off successive
 * cluster views: a group whose primary is down while it has replicas is a failover waiting
 * for the dead primary's lease to run out; a new primary under a new term that no
 * switchover explains is a failover done; a node joining or leaving a group is a replica
 * change. Observing views (rather than hooking the failover monitor) keeps this module a
 * reader of what GET /cluster already says.
 */

/** Finished operations kept for the page. */
const KEEP_FINISHED = 8

interface GroupFacts {
  primary: string | null
  term: number
  nodes: Set<string>
}

function factsOf (g: GroupView): GroupFacts {
  return { primary: g.nodes.find((n) => n.role === 'primary')?.url ?? null, term: g.term, nodes: new Set(g.nodes.map((n) => n.url)) }
}

export class OperationLog {
  private readonly running = new Map<string, DashboardOperation>()
  private finished: DashboardOperation[] = []
  private last: Map<string, GroupFacts> | undefined

  constructor (private readonly now: () => Date = () => new Date()) {}

  /** Running first (oldest first), then the finished ones (newest first). */
  list (): DashboardOperation[] {
    return [...this.running.values(), ...this.finished]
  }

  switchoverStarted (group: string, view: ClusterView): void {
    const g = view.groups.find((x) => x.id === group)
    this.running.set(`switchover:${group}`, {
      kind: 'switchover', group, state: 'running', from: g === undefined ? null : factsOf(g).primary, to: null, term: null,
      startedAt: this.now().toISOString(), finishedAt: null, detail: 'fencing the primary; the chosen replica catches up, then takes over'
    })
  }

  /** `ok`: the call answered 2xx; `message`: its error otherwise. The new primary comes from the view. */
  switchoverEnded (group: string, ok: boolean, message: string, view: ClusterView): void {
    const op = this.running.get(`switchover:${group}`)
    if (op === undefined) return
    this.running.delete(`switchover:${group}`)
    const g = view.groups.find((x) => x.id === group)
    const facts = g === undefined ? undefined : factsOf(g)
    this.finish({
      ...op,
      state: ok ? 'done' : 'failed',
      to: ok ? facts?.primary ?? null : null,
      term: ok ? facts?.term ?? null : null,
      detail: ok ? `primary handed over to ${facts?.primary ?? '?'} (term ${facts?.term ?? '?'})` : message
    })
    // The promotion is this switchover's, not a failover: do not report it again.
    if (ok && g !== undefined && this.last !== undefined) this.last.set(group, factsOf(g))
  }

  /** Compares a view with the previous one: failovers pending and done, replicas added and removed. */
  observe (view: ClusterView): void {
    const now = this.now().toISOString()
    const next = new Map(view.groups.map((g) => [g.id, factsOf(g)]))
    for (const g of view.groups) {
      const before = this.last?.get(g.id)
      const after = next.get(g.id) as GroupFacts
      if (before !== undefined && !this.running.has(`switchover:${g.id}`)) this.compare(g.id, before, after, now)
      this.pendingFailover(g, now)
    }
    for (const key of this.running.keys()) {
      const [kind, id] = key.split(':') as [string, string]
      if (kind === 'failover' && !next.has(id)) this.running.delete(key)
    }
    this.last = next
  }

  private compare (group: string, before: GroupFacts, after: GroupFacts, now: string): void {
    if (after.primary !== null && after.primary !== before.primary && after.term > before.term) {
      const pending = this.running.get(`failover:${group}`)
      this.running.delete(`failover:${group}`)
      this.finish({
        kind: 'failover', group, state: 'done', from: before.primary, to: after.primary, term: after.term,
        startedAt: pending?.startedAt ?? now, finishedAt: now, detail: `${after.primary} promoted (term ${after.term})`
      })
    }
    for (const url of after.nodes) {
      if (!before.nodes.has(url)) this.finish({ kind: 'replica', group, state: 'done', from: null, to: url, term: null, startedAt: now, finishedAt: now, detail: `replica ${url} added` })
    }
    for (const url of before.nodes) {
      if (!after.nodes.has(url)) this.finish({ kind: 'replica', group, state: 'done', from: url, to: null, term: null, startedAt: now, finishedAt: now, detail: `replica ${url} removed` })
    }
  }

  /** A group with replicas whose primary is down: the failover monitor waits for its lease to run out. */
  private pendingFailover (g: GroupView, now: string): void {
    const primary = g.nodes.find((n) => n.role === 'primary')
    const key = `failover:${g.id}`
    const waiting = primary !== undefined && primary.health === 'down' && g.nodes.some((n) => n.role === 'replica')
    if (!waiting) {
      this.running.delete(key)
      return
    }
    if (this.running.has(key)) return
    const candidates = g.nodes.filter((n) => n.role === 'replica' && n.inSync === true && n.health === 'up').length
    this.running.set(key, {
      kind: 'failover', group: g.id, state: 'pending', from: primary.url, to: null, term: null, startedAt: now, finishedAt: null,
      detail: candidates > 0
        ? `primary ${primary.url} is down; an in-sync replica takes over once its lease has run out`
        : `primary ${primary.url} is down and no in-sync replica is up: the group waits for it`
    })
  }

  private finish (op: DashboardOperation): void {
    this.finished = [{ ...op, finishedAt: op.finishedAt ?? this.now().toISOString() }, ...this.finished].slice(0, KEEP_FINISHED)
  }
}
