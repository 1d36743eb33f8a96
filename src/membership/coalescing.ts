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

  constructor (private readonly options: CoalescingOptions<Req, Res>) {}

  enqueue (key: string, req: Req, lane = ''): Promise<Res> {
    return new Promise((resolve, reject) => {
      this.pending.push({ req, key, lane, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(this.flush)
      }
    })
  }

  private readonly flush = (): void => {
    this.scheduled = false
    const pending = this.pending
    this.pending = []
    const table = this.options.table()
    if (pending.length === 1 || table === undefined) {
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
    for (const [url, indexes] of plan.byPrimary) {
      for (let start = 0; start < indexes.length; start += maxKeys) {
        const part = indexes.slice(start, start + maxKeys).map((i) => reads[i] as PendingOp<Req, Res>)
        if (part.length === 1) alone(part[0] as PendingOp<Req, Res>)
        else void this.send(url, table, part)
      }
    }
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
