/**
 * Exact latency percentiles from every response. autocannon's own histogram stores
 * whole milliseconds, which turns a 0.6 ms direct GET into "1 ms" and makes small
 * differences between scenarios vanish; its response events carry sub-millisecond
 * times, so we keep them all (8 bytes each: a million responses is 8 MB) and sort once.
 */
export class LatencySamples {
  private values = new Float64Array(1 << 16)
  private count = 0

  add (ms: number): void {
    if (this.count === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2)
      bigger.set(this.values)
      this.values = bigger
    }
    this.values[this.count++] = ms
  }

  get size (): number {
    return this.count
  }

  /** Percentiles (0..100) by the nearest-rank method; NaN when there are no samples. */
  summary (percentiles: readonly number[]): { byPercentile: Map<number, number>, avg: number, max: number } {
    const sorted = this.values.slice(0, this.count).sort()
    const byPercentile = new Map<number, number>()
    for (const p of percentiles) {
      const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
      byPercentile.set(p, sorted.length === 0 ? Number.NaN : sorted[rank - 1] as number)
    }
    let sum = 0
    for (const v of sorted) sum += v
    return { byPercentile, avg: sorted.length === 0 ? Number.NaN : sum / sorted.length, max: sorted[sorted.length - 1] ?? Number.NaN }
  }
}
