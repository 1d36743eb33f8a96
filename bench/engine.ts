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
  /** Server CPU µs per request of each slice (with a `cpuSeconds` sampler). */
  cpuSlices: number[]
  /** Whether the rate (and the CPU per request) settled before the time ran out. */
  steady: boolean
}

export interface WarmUpOptions {
  maxMs: number
  sliceMs?: number
  tolerance?: number
  /**
   * The servers' CPU seconds so far: with it, slices agree only when their CPU per
   * request agrees too. The rate can hold still while a JIT is still compiling the hot
   * path (the load generator or the disk bound the rate), and the CPU per request is what
   * keeps falling then.
   */
  cpuSeconds?: () => number | undefined
}

/**
 * Whether the last `SETTLED_SLICES` figures lie within `tolerance` of each other: two alone
 * can agree while a slow decline goes on (1,571 then 1,490 µs per insert, 5% apart, on the
 * way from 2,357 to ~900).
 */
const SETTLED_SLICES = 3
function settled (figures: readonly number[], tolerance: number): boolean {
  const last = figures.slice(-SETTLED_SLICES)
  if (last.length < SETTLED_SLICES || last.some((f) => !(f > 0))) return false
  return Math.max(...last) - Math.min(...last) <= tolerance * Math.max(...last)
}

/**
 * Unmeasured load until the rate is steady: a cold code path (V8 has not optimized it
 * yet, and on a busy machine its background compiler gets little CPU) can run several
 * times slower for seconds. Runs slices of `sliceMs` until three in a row agree within
 * `tolerance`, or `maxMs` has passed.
 */
export async function warmUp (spec: Omit<LoadSpec, 'durationMs'>, options: WarmUpOptions): Promise<WarmUpResult> {
  const { maxMs, sliceMs = 1000, tolerance = 0.1, cpuSeconds } = options
  const slices: number[] = []
  const cpuSlices: number[] = []
  let spent = 0
  while (spent < maxMs && spec.signal?.aborted !== true) {
    const ms = Math.min(sliceMs, maxMs - spent)
    const cpu0 = cpuSeconds?.()
    const r = await runLoad({ ...spec, durationMs: ms })
    const cpu1 = cpuSeconds?.()
    spent += ms
    slices.push(r.reqPerSec)
    if (cpu0 !== undefined && cpu1 !== undefined && r.requests > 0) cpuSlices.push((cpu1 - cpu0) * 1e6 / r.requests)
    const rateSteady = settled(slices, tolerance)
    const cpuSteady = cpuSeconds === undefined || (cpuSlices.length === slices.length && settled(cpuSlices, tolerance))
    if (rateSteady && cpuSteady) return { seconds: spent / 1000, slices, cpuSlices, steady: true }
  }
  return { seconds: spent / 1000, slices, cpuSlices, steady: false }
}
