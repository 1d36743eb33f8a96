import type { LoadResult, WarmUpResult } from './engine'
import type { ScenarioId } from './options'

/**
 * The suite's ratios and targets (issue 5), computed from measurements by name. Pure.
 * A ratio compares two measurements of the same run; the peer, batch and group-commit
 * ones compare measurements of the same cluster, taken back to back.
 */

export interface Measurement extends LoadResult {
  scenario: ScenarioId
  /** Unique within its scenario, e.g. "GET", "batch GET". */
  name: string
  /** What was measured, for the table (e.g. "router → 3 groups"). */
  target: string
  /** How the warm-up before it went (absent when there was none). */
  warmup?: WarmUpResult
  /** CPU time of the target's server processes per request, µs (absent when not measured). */
  serverCpuUsPerOp?: number
}

export interface Ref {
  scenario: ScenarioId
  name: string
}

export interface RatioSpec {
  id: string
  label: string
  num: Ref
  den: Ref
  /** Batches compare keys/s; everything else requests/s (the same thing for single keys). */
  per: 'req' | 'keys'
  /** The target: pass when the ratio is at least this. Absent: informational. */
  min?: number
}

export type Verdict = 'pass' | 'miss' | 'n/a' | 'info'

export interface RatioResult {
  id: string
  label: string
  value: number | null
  min: number | undefined
  /** For a limit (CPU per op): pass when the value is at most this. */
  max?: number
  /** What the value is in: a ratio (×, the default) or microseconds. */
  unit?: 'x' | 'µs'
  verdict: Verdict
}

/** A ceiling on a measurement's server CPU per request. */
export interface LimitSpec {
  id: string
  label: string
  ref: Ref
  /** µs of server CPU per request. */
  max: number
}

/** The YCSB phases, in run order; issue 10's targets against etcd per phase. */
export const YCSB_PHASES = ['insert', 'A', 'B', 'C', 'F'] as const
const ETCD_TARGETS: Record<string, number | undefined> = { insert: 2, A: 2, B: 4, C: 4 }

export const RATIOS: readonly RatioSpec[] = [
  { id: 'routed-vs-nginx', label: 'routed GET / nginx GET (same node)', num: { scenario: 'peer', name: 'router GET' }, den: { scenario: 'peer', name: 'nginx GET' }, per: 'req', min: 0.8 },
  { id: 'direct-vs-nginx', label: 'direct client GET / nginx GET (same node)', num: { scenario: 'peer', name: 'direct GET' }, den: { scenario: 'peer', name: 'nginx GET' }, per: 'req', min: 1.0 },
  { id: 'batch-vs-single', label: 'batch GET keys/s / single GET keys/s', num: { scenario: 'batch', name: 'batch GET' }, den: { scenario: 'batch', name: 'GET' }, per: 'keys', min: 10 },
  { id: 'group-commit', label: 'durable PUT, group commit / 1 tx per write', num: { scenario: 'group-commit', name: 'PUT group commit' }, den: { scenario: 'group-commit', name: 'PUT 1 tx/write' }, per: 'req', min: 3 },
  { id: 'request-ids', label: 'durable PUT with request ids / without (exactly-once record)', num: { scenario: 'group-commit', name: 'PUT group commit + request ids' }, den: { scenario: 'group-commit', name: 'PUT group commit' }, per: 'req' },
  { id: 'batch-put-vs-single', label: 'batch PUT keys/s / single PUT keys/s', num: { scenario: 'batch', name: 'batch PUT' }, den: { scenario: 'batch', name: 'PUT' }, per: 'keys' },
  { id: 'routed-1-per-request-vs-nginx', label: 'routed GET, coalescing off / nginx GET', num: { scenario: 'peer', name: 'router GET 1/req' }, den: { scenario: 'peer', name: 'nginx GET' }, per: 'req' },
  { id: 'direct-1-per-request-vs-nginx', label: 'direct GET, coalescing off / nginx GET', num: { scenario: 'peer', name: 'direct GET 1/req' }, den: { scenario: 'peer', name: 'nginx GET' }, per: 'req' },
  { id: 'router-vs-node', label: 'routed GET / same node direct (the hop)', num: { scenario: 'peer', name: 'router GET' }, den: { scenario: 'peer', name: 'node GET' }, per: 'req' },
  { id: 'nginx-vs-node', label: 'nginx GET / same node direct', num: { scenario: 'peer', name: 'nginx GET' }, den: { scenario: 'peer', name: 'node GET' }, per: 'req' },
  { id: 'routed-vs-direct-get', label: 'routed GET / direct client GET (N groups)', num: { scenario: 'routed', name: 'GET' }, den: { scenario: 'direct', name: 'GET' }, per: 'req' },
  { id: 'routed-vs-direct-put', label: 'routed PUT / direct client PUT (N groups)', num: { scenario: 'routed', name: 'PUT' }, den: { scenario: 'direct', name: 'PUT' }, per: 'req' },
  { id: 'scaling-get', label: 'routed GET, 4 groups / 1 group', num: { scenario: 'scaling', name: 'GET 4 groups' }, den: { scenario: 'scaling', name: 'GET 1 group' }, per: 'req' },
  { id: 'scaling-put', label: 'routed PUT, 4 groups / 1 group', num: { scenario: 'scaling', name: 'PUT 4 groups' }, den: { scenario: 'scaling', name: 'PUT 1 group' }, per: 'req' },
  ...trustBoundaryRatios(),
  ...ycsbRatios()
]

/**
 * Issue 10's targets on the YCSB scenario: shardkv as `npm start` runs it (its groups of
 * primary + replica, through the router) against a 3-member etcd (insert and A ≥ 2×,
 * B and C ≥ 4×), and against itself without replicas (one replica costs at most 0.3 of
 * the write throughput: ≥ 0.7×, on the insert phase, which is all writes). Redis, F and
 * the direct client (the same cluster without the router hop) are for scale, without a target.
 */

function ycsbRatios (): RatioSpec[] {
  const ref = (system: string, phase: string): Ref => ({ scenario: 'ycsb', name: `${system} ${phase}` })
  const label = (phase: string): string => phase === 'insert' ? 'insert' : `workload ${phase}`
  return [
    ...YCSB_PHASES.map((p) => ({ id: `ycsb-${p.toLowerCase()}-vs-etcd`, label: `YCSB ${label(p)}: shardkv / etcd`, num: ref('shardkv', p), den: ref('etcd', p), per: 'req' as const, ...(ETCD_TARGETS[p] === undefined ? {} : { min: ETCD_TARGETS[p] }) })),
    ...YCSB_PHASES.map((p) => ({ id: `ycsb-${p.toLowerCase()}-direct-vs-etcd`, label: `YCSB ${label(p)}: shardkv direct client / etcd`, num: ref('direct', p), den: ref('etcd', p), per: 'req' as const })),
    { id: 'ycsb-replica-cost', label: 'YCSB insert (PUT): replicated / unreplicated shardkv', num: ref('shardkv', 'insert'), den: ref('unreplicated', 'insert'), per: 'req', min: 0.7 },
    ...YCSB_PHASES.filter((p) => p !== 'insert').map((p) => ({ id: `ycsb-${p.toLowerCase()}-replica-cost`, label: `YCSB ${label(p)}: replicated / unreplicated shardkv`, num: ref('shardkv', p), den: ref('unreplicated', p), per: 'req' as const })),
    ...YCSB_PHASES.map((p) => ({ id: `ycsb-${p.toLowerCase()}-vs-redis`, label: `YCSB ${label(p)}: shardkv / redis (appendfsync always)`, num: ref('shardkv', p), den: ref('redis', p), per: 'req' as const }))
  ]
}

export const LIMITS: readonly LimitSpec[] = [
  { id: 'ycsb-cpu-per-write', label: 'server CPU per replicated write (YCSB insert, shardkv)', ref: { scenario: 'ycsb', name: 'shardkv insert' }, max: 600 }
]

export function computeLimit (spec: LimitSpec, all: readonly Measurement[]): RatioResult {
  const m = findMeasurement(all, spec.ref)
  const value = m === undefined || m.errors > 0 || m.serverCpuUsPerOp === undefined ? null : m.serverCpuUsPerOp
  const verdict: Verdict = value === null ? 'n/a' : value <= spec.max ? 'pass' : 'miss'
  return { id: spec.id, label: spec.label, value, min: undefined, max: spec.max, unit: 'µs', verdict }
}

/** The cost of client auth (tokens + cluster secret) and of an HTTPS client listener on routed GET and PUT. */
function trustBoundaryRatios (): RatioSpec[] {
  const variants = [['auth', 'tokens + cluster secret'], ['TLS', 'HTTPS client listener'], ['auth+TLS', 'both']] as const
  return variants.flatMap(([v, what]) => (['GET', 'PUT'] as const).map((op) => ({
    id: `${v.toLowerCase().replace('+', '-')}-${op.toLowerCase()}`,
    label: `routed ${op}, ${what} / without`,
    num: { scenario: 'auth' as const, name: `${v} ${op}` },
    den: { scenario: 'auth' as const, name: op },
    per: 'req' as const
  })))
}

export function findMeasurement (all: readonly Measurement[], ref: Ref): Measurement | undefined {
  return all.find((m) => m.scenario === ref.scenario && m.name === ref.name)
}

/**
 * A measurement with failed requests does not count: its rate would compare a target
 * that answered errors quickly with one that did the work.
 */
function rate (m: Measurement | undefined, per: 'req' | 'keys'): number | undefined {
  if (m === undefined || m.errors > 0) return undefined
  return per === 'keys' ? m.keysPerSec : m.reqPerSec
}

export function computeRatio (spec: RatioSpec, all: readonly Measurement[]): RatioResult {
  const num = rate(findMeasurement(all, spec.num), spec.per)
  const den = rate(findMeasurement(all, spec.den), spec.per)
  const value = num === undefined || den === undefined || den === 0 ? null : num / den
  let verdict: Verdict
  if (spec.min === undefined) verdict = value === null ? 'n/a' : 'info'
  else if (value === null) verdict = 'n/a'
  else verdict = value >= spec.min ? 'pass' : 'miss'
  return { id: spec.id, label: spec.label, value, min: spec.min, verdict }
}

/**
 * Every ratio whose scenarios ran, targets first. A target whose measurements are missing
 * or failed is listed as n/a (a missed measurement must show); a ratio without a target
 * is left out then (the YCSB scenario run against some of its systems only).
 */
export function computeRatios (all: readonly Measurement[], specs: readonly RatioSpec[] = RATIOS, limits: readonly LimitSpec[] = LIMITS): RatioResult[] {
  const ran = (ref: Ref): boolean => all.some((m) => m.scenario === ref.scenario)
  const isTarget = (r: RatioResult): boolean => r.min !== undefined || r.max !== undefined
  return [
    ...specs.filter((s) => ran(s.num) && ran(s.den)).map((s) => computeRatio(s, all)).filter((r) => r.min !== undefined || r.verdict !== 'n/a'),
    ...limits.filter((l) => ran(l.ref)).map((l) => computeLimit(l, all))
  ].sort((a, b) => Number(isTarget(b)) - Number(isTarget(a)))
}
