import { planBatch } from './batch-plan'
import type { RoutingTable } from './routing-table'

/**
 * The queue behind read coalescing, shared by the router (router/read-coalescer.ts)
 * and the direct client (src/client/direct.ts), and behind the router's write
 * coalescing (router/write-coalescer.ts): requests made in one turn of the event
 * loop are planned together on the next one, and each primary gets its share as one
 * batch of at most `maxKeys` ops. Requests of different lanes (the router's writes: of
 * different principals, which bind their request ids) never share a batch. A lone
 * request, a key a rebalance is moving, a key no group owns, and a request whose batch
 * answer could not stand for it all go `alone`, through the caller's single-key path
 * with its own retries.
 *
 * With `maxInFlight`, at most that many requests (batches, and requests sent alone) of
 * one lane are in flight to one primary; what is planned for a primary at its limit is
 * held and planned again, with whatever arrived meanwhile, as soon as one of them ends. The
 * batches then grow with the load instead of with how requests happen to fall into
 * turns: a busy primary gets fewer, larger batches (fewer HTTP exchanges, group commits
 * and shipments per op), and an idle one still gets each request at once — the
 * self-clocking of TCP's Nagle rule, without its timer.
 */

export interface PendingOp<Req, Res> {
  /** What `alone` sends; the sender may replace it (e.g. to carry what the batch attempt learned). */
  req: Req
  readonly key: string
  /** Requests share a batch only with requests of the same lane ('' by default). */
  readonly lane: string
  resolve: (result: Res) => void
  reject: (err: unknown) => void
}

export interface CoalescingOptions<Req, Res> {
  maxKeys: number
  /**
   * Most requests (batches, and ops sent alone) of one lane in flight to one primary;
   * what arrives for a primary at its limit waits for one of them to end and goes in the
   * next batch. Undefined: no limit (every turn's share is sent at once).
   */
  maxInFlight?: number | undefined
  /** The table to plan by; undefined (none loaded yet) sends every request alone. */
  table: () => RoutingTable | undefined
  /** Sends one request through the single-key path and settles it. */
  alone: (read: PendingOp<Req, Res>) => void
  /**
   * Sends reads of one primary as one batch. Returns an answer per read, in order;
   * undefined entries (or a shorter array) send those reads alone. Must not throw.
   */
  together: (url: string, table: RoutingTable, reads: ReadonlyArray<PendingOp<Req, Res>>) => Promise<ReadonlyArray<Res | undefined>>
}

export class CoalescingQueue<Req, Res> {
  private pending: Array<PendingOp<Req, Res>> = []
  private scheduled = false
  private readonly inFlight = new Map<string, number>()
  private readonly held = new Map<string, Array<PendingOp<Req, Res>>>()

  constructor (private readonly options: CoalescingOptions<Req, Res>) {
    const limit = options.maxInFlight
    // Zero or less would hold every request forever.
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) throw new RangeError(`maxInFlight must be a positive integer, not ${String(limit)}`)
  }

  enqueue (key: string, req: Req, lane = ''): Promise<Res> {
    return new Promise((resolve, reject) => {
      this.pending.push({ req, key, lane, resolve, reject })
      this.schedule()
    })
  }

  private schedule (): void {
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false
    const pending = this.pending
    this.pending = []
    const table = this.options.table()
    if (table === undefined || (pending.length === 1 && this.options.maxInFlight === undefined)) {
      for (const r of pending) this.options.alone(r)
      return
    }
    for (const lane of byLane(pending)) this.plan(table, lane)
  }

  private plan (table: RoutingTable, reads: Array<PendingOp<Req, Res>>): void {
    const { alone, maxKeys } = this.options
    const plan = planBatch(table, reads.map((r) => r.key))
    for (const i of plan.single) alone(reads[i] as PendingOp<Req, Res>)
    for (const i of plan.unowned) alone(reads[i] as PendingOp<Req, Res>)
    // Each lane has its own window to each primary: one client's batch never waits for another's.
    const lane = reads[0]?.lane ?? ''
    for (const [url, indexes] of plan.byPrimary) {
      const window = `${lane}\n${url}`
      for (let start = 0; start < indexes.length; start += maxKeys) {
        const part = indexes.slice(start, start + maxKeys).map((i) => reads[i] as PendingOp<Req, Res>)
        if (!this.begin(window)) this.hold(window, part)
        else if (part.length === 1) alone(this.tracked(window, part[0] as PendingOp<Req, Res>))
        else void this.send(url, table, part).finally(() => { this.end(window) })
      }
    }
  }

  /** Counts a request of a lane to a primary (`window`) as in flight; false when it is at its limit. */
  private begin (window: string): boolean {
    const limit = this.options.maxInFlight
    if (limit === undefined) return true
    const now = this.inFlight.get(window) ?? 0
    if (now >= limit) return false
    this.inFlight.set(window, now + 1)
    return true
  }

  private end (window: string): void {
    if (this.options.maxInFlight === undefined) return
    const now = (this.inFlight.get(window) ?? 1) - 1
    if (now > 0) this.inFlight.set(window, now)
    else this.inFlight.delete(window)
    const held = this.held.get(window)
    if (held !== undefined) {
      this.held.delete(window)
      for (const op of held) this.pending.push(op)
      this.schedule()
    }
  }

  private hold (window: string, ops: Array<PendingOp<Req, Res>>): void {
    const held = this.held.get(window)
    if (held === undefined) this.held.set(window, ops)
    else for (const op of ops) held.push(op)
  }

  /** `op`, settling which ends its request in `window`. */
  private tracked (window: string, op: PendingOp<Req, Res>): PendingOp<Req, Res> {
    if (this.options.maxInFlight === undefined) return op
    const { resolve, reject } = op
    let ended = false
    const end = (): void => {
      if (ended) return
      ended = true
      this.end(window)
    }
    op.resolve = (result) => { end(); resolve(result) }
    op.reject = (err) => { end(); reject(err) }
    return op
  }

  private async send (url: string, table: RoutingTable, reads: Array<PendingOp<Req, Res>>): Promise<void> {
    let answers: ReadonlyArray<Res | undefined>
    try {
      answers = await this.options.together(url, table, reads)
    } catch {
      answers = []
    }
    for (let i = 0; i < reads.length; i++) {
      const read = reads[i] as PendingOp<Req, Res>
      const answer = answers[i]
      if (answer !== undefined) read.resolve(answer)
      else this.options.alone(read)
    }
  }
}

/** The requests grouped by lane, each group in arrival order. */
function byLane<T extends { lane: string }> (pending: T[]): T[][] {
  const first = pending[0]
  if (first === undefined || pending.every((p) => p.lane === first.lane)) return [pending]
  const lanes = new Map<string, T[]>()
  for (const p of pending) {
    const list = lanes.get(p.lane)
    if (list === undefined) lanes.set(p.lane, [p])
    else list.push(p)
  }
  return [...lanes.values()]
}
