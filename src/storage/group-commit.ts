/**
 * Group commit: concurrent writes of one worker share one transaction, so they share
 * one fsync. With `synchronous=FULL` a commit costs a disk flush (milliseconds) while
 * the writes themselves cost microseconds; committing each write alone caps a node at
 * one flush per write, coalescing lets the flush cost be split among all writes that
 * arrived meanwhile.
 *
 * A unit (one request's ops: a single PUT, or a whole batch) is queued and gets a
 * promise. The queue is flushed on the next `setImmediate` — after the event loop has
 * taken in every request that was already readable, which is exactly the set of writes
 * that were waiting on each other — or at once when it holds `maxOps` ops. A unit is
 * never split between two commits, so a batch stays atomic. A promise settles only
 * after the commit that holds its unit returned: no write is acknowledged before it is
 * durable. When the commit throws (the transaction as a whole failed), every unit in it
 * is rejected with that error; per-op failures are the commit function's results.
 *
 * `maxOps: 1` commits every unit synchronously inside `submit`, one transaction each:
 * exactly the behaviour without group commit (the baseline).
 *
 * No I/O here: the commit function is given (the store's `applyOps`), so the queue is
 * unit-tested with a fake.
 */

export interface GroupCommitStats {
  /** Ops in the transaction. */
  ops: number
  /** Units (requests) that shared it. */
  units: number
  /** How long the commit function ran, in ms. */
  ms: number
  /** False when it threw. */
  ok: boolean
}

export interface GroupCommitOptions<Op, Result> {
  /** Most ops in one transaction; a unit larger than this is committed alone. */
  maxOps: number
  /** Applies all ops in one transaction and returns one result per op, in order; throws when nothing committed. */
  commit: (ops: Op[]) => Result[]
  /** How to defer a flush (default setImmediate). */
  schedule?: (flush: () => void) => void
  /** Called after every commit (metrics). */
  onCommit?: (stats: GroupCommitStats) => void
}

interface Unit<Op, Result> {
  ops: readonly Op[]
  resolve: (results: Result[]) => void
  reject: (err: unknown) => void
}

export class GroupCommit<Op, Result> {
  private readonly maxOps: number
  private readonly commitFn: (ops: Op[]) => Result[]
  private readonly schedule: (flush: () => void) => void
  private readonly onCommit: ((stats: GroupCommitStats) => void) | undefined
  private queue: Array<Unit<Op, Result>> = []
  private queuedOps = 0
  private scheduled = false

  constructor (options: GroupCommitOptions<Op, Result>) {
    if (!Number.isInteger(options.maxOps) || options.maxOps < 1) throw new RangeError('maxOps must be an integer >= 1')
    this.maxOps = options.maxOps
    this.commitFn = options.commit
    this.schedule = options.schedule ?? ((flush) => { setImmediate(flush) })
    this.onCommit = options.onCommit
  }

  /** Ops waiting for the next commit. */
  get pending (): number {
    return this.queuedOps
  }

  /** Queues one unit; resolves with its ops' results once the transaction holding them committed. */
  submit (ops: readonly Op[]): Promise<Result[]> {
    if (ops.length === 0) return Promise.resolve([])
    return new Promise<Result[]>((resolve, reject) => {
      // The unit must not push the queue over the cap: commit what is queued first.
      if (this.queuedOps > 0 && this.queuedOps + ops.length > this.maxOps) this.flush()
      this.queue.push({ ops, resolve, reject })
      this.queuedOps += ops.length
      if (this.queuedOps >= this.maxOps) {
        this.flush()
      } else if (!this.scheduled) {
        this.scheduled = true
        this.schedule(() => {
          this.scheduled = false
          this.flush()
        })
      }
    })
  }

  /** Commits everything queued now, in one transaction. */
  flush (): void {
    if (this.queue.length === 0) return
    const units = this.queue
    const count = this.queuedOps
    this.queue = []
    this.queuedOps = 0
    const all: Op[] = new Array(count)
    let n = 0
    for (const u of units) for (const op of u.ops) all[n++] = op
    const started = performance.now()
    let results: Result[]
    try {
      results = this.commitFn(all)
      if (results.length !== count) throw new Error(`the commit returned ${results.length} results for ${count} ops`)
    } catch (err) {
      this.onCommit?.({ ops: count, units: units.length, ms: performance.now() - started, ok: false })
      for (const u of units) u.reject(err)
      return
    }
    this.onCommit?.({ ops: count, units: units.length, ms: performance.now() - started, ok: true })
    let at = 0
    for (const u of units) {
      u.resolve(results.slice(at, at + u.ops.length))
      at += u.ops.length
    }
  }
}
