import { performance } from 'node:perf_hooks'
import { latencySummary, newHistogram, recordMs, runLoad, warmUp, type LoadResult, type Operation, type WarmUpResult } from './engine'
import { cpuSeconds } from './proc-cpu'
import type { BenchContext } from './context'
import type { ScenarioId } from './options'
import type { Measurement } from './ratios'
import type { Skip } from './report'
import { formatFootprint, type Footprint } from './footprint'

/**
 * Collects a run's measurements. Every measurement is the same procedure: one probe
 * request (a target that cannot serve at all is reported in one line, not as 5 s of
 * errors), the warm-up, then the measured window, all with the run's connections.
 */
/** What a measurement may do differently from the suite's defaults. */
export interface MeasureOptions {
  connections?: number
  durationS?: number
  warmupS?: number
  /** The server's processes (their descendants count too): their CPU per request is recorded. */
  serverPids?: readonly number[]
}

export class Suite {
  readonly measurements: Measurement[] = []
  readonly skipped: Array<Skip & { failed: boolean }> = []
  /** Idle memory of whole clusters (the footprint scenario). */
  readonly footprints: Footprint[] = []

  constructor (readonly ctx: BenchContext) {}

  /** Returns undefined when the probe failed (recorded as a failed skip). */
  async measure (scenario: ScenarioId, name: string, target: string, op: Operation, mo: MeasureOptions = {}): Promise<Measurement | undefined> {
    const { opts, signal } = this.ctx
    const warmupS = mo.warmupS ?? opts.warmup
    signal.throwIfAborted()
    try {
      await op()
    } catch (err) {
      signal.throwIfAborted()
      this.skip(scenario, name, `the first request failed: ${(err as Error).message}`, true)
      return undefined
    }
    const settings = { connections: mo.connections ?? opts.connections, op, signal }
    const warm: WarmUpResult = warmupS > 0 ? await warmUp(settings, { maxMs: warmupS * 1000, sliceMs: warmUpSliceMs(warmupS) }) : { seconds: 0, slices: [], cpuSlices: [], steady: false }
    signal.throwIfAborted()
    process.stdout.write(`  ${`${scenario} ${name}`.padEnd(30)} ${target.padEnd(30)} `)
    const cpu0 = cpuSeconds(mo.serverPids ?? [])
    const r = await runLoad({ ...settings, durationMs: (mo.durationS ?? opts.duration) * 1000 })
    const cpu = cpuPerRequest(cpu0, cpuSeconds(mo.serverPids ?? []), r.requests)
    signal.throwIfAborted()
    const cold = warmupS > 0 && !warm.steady ? ` (not steady after ${warm.seconds} s warm-up)` : ''
    return this.record({ scenario, name, target, ...r, warmup: warm, ...cpu }, cold)
  }

  /**
   * `count` operations, `op(0)` .. `op(count - 1)`, each exactly once, over the same
   * closed loops (YCSB's load phase: the rate is count / time taken). No warm-up: the
   * first write of every key happens only once.
   */
  async measureCount (scenario: ScenarioId, name: string, target: string, count: number, op: (i: number) => Promise<unknown>, mo: MeasureOptions = {}): Promise<Measurement> {
    const { signal } = this.ctx
    signal.throwIfAborted()
    process.stdout.write(`  ${`${scenario} ${name}`.padEnd(30)} ${target.padEnd(30)} `)
    const h = newHistogram()
    let next = 0
    let errors = 0
    let firstError: string | undefined
    const cpu0 = cpuSeconds(mo.serverPids ?? [])
    const start = performance.now()
    try {
      await Promise.all(Array.from({ length: Math.min(count, mo.connections ?? this.ctx.opts.connections) }, async () => {
        while (next < count && !signal.aborted) {
          const i = next++
          const t0 = performance.now()
          try {
            await op(i)
            recordMs(h, performance.now() - t0)
          } catch (err) {
            errors++
            firstError ??= (err as Error).message
          }
        }
      }))
      signal.throwIfAborted()
      const durationS = (performance.now() - start) / 1000
      const requests = count - errors
      const r: LoadResult = {
        connections: mo.connections ?? this.ctx.opts.connections,
        durationS,
        requests,
        keys: requests,
        reqPerSec: requests / durationS,
        keysPerSec: requests / durationS,
        latencyMs: latencySummary(h),
        errors,
        firstError
      }
      return this.record({ scenario, name, target, ...r, ...cpuPerRequest(cpu0, cpuSeconds(mo.serverPids ?? []), requests) }, ` (${count} in ${durationS.toFixed(1)} s)`)
    } finally {
      h.destroy()
    }
  }

  private record (m: Measurement, note = ''): Measurement {
    const keys = m.keys === m.requests ? '' : `, ${Math.round(m.keysPerSec)} keys/s`
    const errors = m.errors === 0 ? '' : `, ${m.errors} errors (first: ${m.firstError ?? '?'})`
    const cpu = m.serverCpuUsPerOp === undefined ? '' : `, server CPU ${Math.round(m.serverCpuUsPerOp)} µs/op`
    console.log(`${Math.round(m.reqPerSec)} req/s${keys}, p50 ${m.latencyMs.p50.toFixed(2)} ms, p99 ${m.latencyMs.p99.toFixed(2)} ms${cpu}${errors}${note}`)
    this.measurements.push(m)
    return m
  }

  recordFootprint (f: Footprint): void {
    console.log(`  ${formatFootprint(f)}`)
    this.footprints.push(f)
  }

  skip (scenario: ScenarioId, what: string, reason: string, failed = false): void {
    this.skipped.push({ scenario, what, reason, failed })
    console.log(`  ${failed ? 'FAILED' : 'skipped'} ${scenario}${what === '' ? '' : ` ${what}`}: ${reason}`)
  }

  /** Failures that make the run exit non-zero: errors under load, or a target that could not serve. */
  failures (): string[] {
    return [
      ...this.measurements.filter((m) => m.errors > 0).map((m) => `${m.scenario} ${m.name}: ${m.errors} failed requests (first: ${m.firstError ?? '?'})`),
      ...this.skipped.filter((s) => s.failed).map((s) => `${s.scenario} ${s.what}: ${s.reason}`)
    ]
  }
}

function cpuPerRequest (before: number | undefined, after: number | undefined, requests: number): { serverCpuUsPerOp?: number } {
  if (before === undefined || after === undefined || requests === 0) return {}
  return { serverCpuUsPerOp: (after - before) * 1e6 / requests }
}

/** 1-s slices, or shorter ones when the warm-up is too short for the three a verdict needs (ycsb's 2 s). */
function warmUpSliceMs (warmupS: number): number {
  return Math.min(1000, Math.max(250, Math.floor(warmupS * 1000 / 4)))
}
