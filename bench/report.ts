import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { BenchOptions, ScenarioId } from './options'
import type { Measurement, RatioResult } from './ratios'
import type { Footprint } from './footprint'

/** Turns measurements into the printed table and ratios, and the JSON under bench/results/. */

export interface Environment {
  node: string
  platform: string
  cores: number
  cpu: string
  /** 1-minute load average when the run started: other work on the machine skews numbers. */
  loadAverage: number
  nginx?: string
}

export interface Skip {
  scenario: ScenarioId
  what: string
  reason: string
}

export interface BenchReport {
  startedAt: string
  finishedAt: string
  environment: Environment
  options: Omit<BenchOptions, 'keep'>
  measurements: Measurement[]
  footprints: Footprint[]
  ratios: RatioResult[]
  skipped: Skip[]
}

function fmt (n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '-'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function table (header: string[], rows: string[][], leftColumns: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  // Text columns left-aligned, numbers right-aligned.
  const line = (cells: string[]): string =>
    cells.map((c, i) => i < leftColumns ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function formatTable (measurements: readonly Measurement[]): string {
  // The server CPU column only when some measurement has it (the YCSB scenario).
  const cpu = measurements.some((m) => m.serverCpuUsPerOp !== undefined)
  const header = ['scenario', 'measurement', 'target', 'req/s', 'keys/s', 'p50 ms', 'p99 ms', 'p999 ms', ...(cpu ? ['CPU µs/op'] : []), 'errors']
  const rows = measurements.map((m) => [
    m.scenario, m.name, m.target,
    fmt(m.reqPerSec, 0), fmt(m.keysPerSec, 0),
    fmt(m.latencyMs.p50, 2), fmt(m.latencyMs.p99, 2), fmt(m.latencyMs.p999, 2),
    ...(cpu ? [m.serverCpuUsPerOp === undefined ? '' : fmt(m.serverCpuUsPerOp, 0)] : []),
    String(m.errors)
  ])
  return table(header, rows, 3)
}

export function formatRatios (ratios: readonly RatioResult[]): string {
  if (ratios.length === 0) return '(no ratios: their scenarios did not run)'
  const header = ['ratio', 'value', 'target', 'verdict']
  const rows = ratios.map((r) => [
    r.label,
    r.value === null ? 'n/a' : r.unit === 'µs' ? `${fmt(r.value, 0)} µs` : `${fmt(r.value, 2)}×`,
    r.max !== undefined ? `≤ ${fmt(r.max, 0)} µs` : r.min === undefined ? '' : `≥ ${fmt(r.min, 1)}×`,
    r.verdict === 'info' ? '' : r.verdict.toUpperCase()
  ])
  return table(header, rows, 1)
}

export function formatSkips (skips: readonly Skip[]): string {
  return skips.map((s) => `skipped ${s.scenario}${s.what === '' ? '' : ` ${s.what}`}: ${s.reason}`).join('\n')
}

/** The repository root (where package.json is), from dist/bench or bench alike. */
export function repoRoot (): string {
  let dir = __dirname
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'shardkv') return dir
    const parent = dirname(dir)
    if (parent === dir) return resolve(__dirname, '..', '..')
    dir = parent
  }
}

/** Writes bench/results/<timestamp>.json and returns its path. */
export function writeReport (report: BenchReport): string {
  const dir = join(repoRoot(), 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  // Colons are not allowed in Windows file names; keep the name portable.
  const file = join(dir, `${report.startedAt.replace(/[:.]/g, '-')}.json`)
  // NaN (no successful request) is not JSON: write null.
  writeFileSync(file, JSON.stringify(report, (_k, v: unknown) => typeof v === 'number' && !Number.isFinite(v) ? null : v, 2) + '\n')
  return file
}
