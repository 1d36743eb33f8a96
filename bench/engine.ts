import { build, type Histogram } from 'hdr-histogram-js'
import { performance } from 'node:perf_hooks'

/**
 * The one load engine every measurement uses, so that ratios between scenarios compare
 * targets and not load generators: `connections` async loops, each awaiting one request
 * at a time (closed loop, no pipelining), for a fixed time. Only requests that complete
 * inside the window count, and only successful ones are timed (a fast error must not
 * flatter latency); latencies go into an HDR histogram at microsecond resolution.
 */

/**
 * One request against the target. Resolves with the number of keys it served (1, or a
 * batch's size); throws when the target answered anything but success.
 */
export type Operation = () => Promise<number>

export interface LoadSpec {
  connections: number
  durationMs: number
  op: Operation
  /** Aborting stops the loops at their next request; the result covers the time run. */
  signal?: AbortSignal | undefined
}

export interface LoadResult {
  connections: number
  durationS: number
  /** Successful requests completed inside the window. */
  requests: number
  keys: number
  reqPerSec: number
  keysPerSec: number
  /** Of successful requests. NaN when there were none. */
  latencyMs: { p50: number, p99: number, p999: number, mean: number, max: number }
  /** Failed requests inside the window. */
  errors: number
  /** The first failure's message, to say what went wrong. */
  firstError: string | undefined
}

/** Longest latency the histogram tracks exactly (60 s, in microseconds); longer is clamped. */
const MAX_TRACKED_US = 60_000_000

export function newHistogram (): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: MAX_TRACKED_US, numberOfSignificantValueDigits: 3, autoResize: false })
}

/** Records a latency in milliseconds; sub-microsecond values count as 1 µs. */
export function recordMs (h: Histogram, ms: number): void {
  h.recordValue(Math.min(MAX_TRACKED_US, Math.max(1, Math.round(ms * 1000))))
}

export function latencySummary (h: Histogram): LoadResult['latencyMs'] {
  if (h.totalCount === 0) return { p50: Number.NaN, p99: Number.NaN, p999: Number.NaN, mean: Number.NaN, max: Number.NaN }
  // A percentile is reported as the top of its bucket, which can lie above the largest value recorded.
  const at = (p: number): number => Math.min(h.getValueAtPercentile(p), h.maxValue) / 1000
  const ms = (us: number): number => us / 1000
  return {
    p50: at(50),
    p99: at(99),
    p999: at(99.9),
    mean: ms(h.mean),
    max: ms(h.maxValue)
  }
}

export async function runLoad (spec: LoadSpec): Promise<LoadResult> {
  if (spec.connections < 1) throw new RangeError('connections must be at least 1')
  const histogram = newHistogram()
  const start = performance.now()
  const deadline = start + spec.durationMs
  let requests = 0
  let keys = 0
  let errors = 0
  let firstError: string | undefined
  const stopped = (): boolean => spec.signal?.aborted === true

  const loop = async (): Promise<void> => {
    while (!stopped()) {
      const t0 = performance.now()
      if (t0 >= deadline) return
      try {
        const n = await spec.op()
        const t1 = performance.now()
        if (t1 > deadline) return
        recordMs(histogram, t1 - t0)
        requests++
        keys += n
      } catch (err) {
        if (performance.now() > deadline) return
        errors++
        firstError ??= err instanceof Error ? err.message : String(err)
        // A target that fails instantly (connection refused) would spin this loop at
        // full speed and starve the others; yield to the event loop instead.
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: spec.connections }, loop))
    const elapsedMs = Math.min(performance.now(), deadline) - start
    const durationS = Math.max(elapsedMs, 1) / 1000
    return {
      connections: spec.connections,
      durationS,
      requests,
      keys,
      reqPerSec: requests / durationS,
      keysPerSec: keys / durationS,
      latencyMs: latencySummary(histogram),
      errors,
      firstError
    }
  } finally {
    histogram.destroy()
  }
}

/** A uniformly random element, so load spreads over the key set instead of one row. */
export function pick<T> (items: readonly T[]): T {
  if (items.length === 0) throw new RangeError('nothing to pick from')
  return items[Math.floor(Math.random() * items.length)] as T
}

export interface WarmUpResult {
  /** Seconds spent warming up. */
  seconds: number
  /** Requests per second of each slice. */
  slices: number[]
  /** Whether the rate settled before the time ran out. */
  steady: boolean
}

/**
 * Unmeasured load until the rate is steady: a cold code path (V8 has not optimized it
 * yet, and on a busy machine its background compiler gets little CPU) can run several
 * times slower for seconds. Runs slices of `sliceMs` until two in a row agree within
 * `tolerance`, or `maxMs` has passed.
 */
export async function warmUp (spec: Omit<LoadSpec, 'durationMs'>, maxMs: number, sliceMs = 1000, tolerance = 0.1): Promise<WarmUpResult> {
  const slices: number[] = []
  let spent = 0
  while (spent < maxMs && spec.signal?.aborted !== true) {
    const ms = Math.min(sliceMs, maxMs - spent)
    const r = await runLoad({ ...spec, durationMs: ms })
    spent += ms
    slices.push(r.reqPerSec)
    const [prev, last] = slices.slice(-2)
    if (slices.length >= 2 && prev !== undefined && last !== undefined && last > 0 && Math.abs(last - prev) <= tolerance * Math.max(last, prev)) {
      return { seconds: spent / 1000, slices, steady: true }
    }
  }
  return { seconds: spent / 1000, slices, steady: false }
}
