import { runLoad, warmUp, type Operation, type WarmUpResult } from './engine'
import type { BenchContext } from './context'
import type { ScenarioId } from './options'
import type { Measurement } from './ratios'
import type { Skip } from './report'

/**
 * Collects a run's measurements. Every measurement is the same procedure: one probe
 * request (a target that cannot serve at all is reported in one line, not as 5 s of
 * errors), the warm-up, then the measured window, all with the run's connections.
 */
export class Suite {
  readonly measurements: Measurement[] = []
  readonly skipped: Array<Skip & { failed: boolean }> = []

  constructor (readonly ctx: BenchContext) {}

  /** Returns undefined when the probe failed (recorded as a failed skip). */
  async measure (scenario: ScenarioId, name: string, target: string, op: Operation): Promise<Measurement | undefined> {
    const { opts, signal } = this.ctx
    signal.throwIfAborted()
    try {
      await op()
    } catch (err) {
      signal.throwIfAborted()
      this.skip(scenario, name, `the first request failed: ${(err as Error).message}`, true)
      return undefined
    }
    const settings = { connections: opts.connections, op, signal }
    const warm: WarmUpResult = opts.warmup > 0 ? await warmUp(settings, opts.warmup * 1000) : { seconds: 0, slices: [], steady: false }
    signal.throwIfAborted()
    process.stdout.write(`  ${`${scenario} ${name}`.padEnd(30)} ${target.padEnd(30)} `)
    const r = await runLoad({ ...settings, durationMs: opts.duration * 1000 })
    signal.throwIfAborted()
    const keys = r.keys === r.requests ? '' : `, ${Math.round(r.keysPerSec)} keys/s`
    const errors = r.errors === 0 ? '' : `, ${r.errors} errors (first: ${r.firstError ?? '?'})`
    const cold = opts.warmup > 0 && !warm.steady ? ` (not steady after ${warm.seconds} s warm-up)` : ''
    console.log(`${Math.round(r.reqPerSec)} req/s${keys}, p99 ${r.latencyMs.p99.toFixed(2)} ms${errors}${cold}`)
    const m: Measurement = { scenario, name, target, ...r, warmup: warm }
    this.measurements.push(m)
    return m
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
