import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { BenchOptions } from './options'
import type { ScenarioResult } from './load'

/** Turns scenario results into the printed table and the JSON file under bench/results/. */

export interface Environment {
  node: string
  platform: string
  cores: number
  cpu: string
}

export interface Ratios {
  /** routed req/s ÷ direct req/s: the share of a direct node's throughput the routed path keeps. */
  get: number | null
  put: number | null
}

export interface BenchReport {
  startedAt: string
  finishedAt: string
  environment: Environment
  options: Omit<BenchOptions, 'keep'>
  cluster: { routerUrl: string, groups: Array<{ id: string, url: string, keys: number }>, directGroup: string }
  scenarios: ScenarioResult[]
  ratios: Ratios
}

export function ratios (results: readonly ScenarioResult[]): Ratios {
  const rps = (name: string): number | undefined => results.find((r) => r.name === name)?.reqPerSec
  const ratio = (a: number | undefined, b: number | undefined): number | null =>
    a === undefined || b === undefined || b === 0 ? null : a / b
  return { get: ratio(rps('routed GET'), rps('direct GET')), put: ratio(rps('routed PUT'), rps('direct PUT')) }
}

function fmt (n: number, digits = 1): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function formatTable (results: readonly ScenarioResult[]): string {
  const header = ['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'non-2xx']
  const rows = results.map((r) => [
    r.name, r.target, fmt(r.reqPerSec, 0), fmt(r.latencyMs.p50, 2), fmt(r.latencyMs.p99, 2), String(r.errors), String(r.non2xx)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  // Text columns left-aligned, numbers right-aligned.
  const line = (cells: string[]): string => cells.map((c, i) => i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function formatRatios (r: Ratios): string {
  const show = (x: number | null): string => x === null ? 'n/a' : `${fmt(x, 2)}×`
  return `routed/direct req/s: GET ${show(r.get)}, PUT ${show(r.put)}`
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
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  return file
}
