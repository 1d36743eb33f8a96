import type { WireRow } from '../protocol/wire'

/**
 * How fast a rebalance may move data: a byte rate, as CockroachDB's
 * `kv.snapshot_rebalance.max_rate` and Cassandra's `stream_throughput_outbound` throttle
 * streaming (a row count says little when rows range from bytes to a MiB), and an optional
 * row rate on top (for many tiny rows, whose per-row cost dominates). A pure decision: how
 * long to wait after a batch that moved `rows` rows and `bytes` bytes in `spentMs`.
 */
export interface RebalanceRate {
  /** Bytes of keys and values per second at most (0: no byte limit). */
  bytesPerSecond: number
  /** Rows per second at most (0: no row limit). */
  rowsPerSecond: number
}

export function throttleDelayMs (rate: RebalanceRate, batch: { rows: number, bytes: number }, spentMs: number): number {
  const byBytes = rate.bytesPerSecond > 0 ? batch.bytes / rate.bytesPerSecond * 1000 : 0
  const byRows = rate.rowsPerSecond > 0 ? batch.rows / rate.rowsPerSecond * 1000 : 0
  return Math.max(0, Math.ceil(Math.max(byBytes, byRows) - spentMs))
}

/** The bytes a batch moves: keys (UTF-8) and values (their decoded size: they travel base64). */
export function rowBytes (rows: readonly WireRow[]): number {
  let bytes = 0
  for (const r of rows) bytes += Buffer.byteLength(r.key) + Math.floor(r.value.length * 3 / 4)
  return bytes
}

/**
 * The pace of every copy loop of one rebalance together (its sources copy in parallel,
 * yet the operator's rate is for the whole move). Time spent idle — a retry, a slow
 * scan — earns at most `burstMs` of credit, so a stalled copy does not burst afterwards.
 * Pure: the caller passes the clock.
 */
export class MoveBudget {
  private rows = 0
  private bytes = 0

  constructor (private readonly rate: RebalanceRate, private since: number, private readonly burstMs = 1000) {}

  /** Records a batch moved at `now`; answers how long its loop waits before the next. */
  spend (batch: { rows: number, bytes: number }, now: number): number {
    const earned = now - this.since - throttleDelayMs(this.rate, { rows: this.rows, bytes: this.bytes }, 0)
    if (earned > this.burstMs) this.since += earned - this.burstMs
    this.rows += batch.rows
    this.bytes += batch.bytes
    return throttleDelayMs(this.rate, { rows: this.rows, bytes: this.bytes }, now - this.since)
  }
}
