import type { Operation } from './engine'
import type { Measurement } from './ratios'
import { ScrambledZipfianGenerator, seededRandom } from './zipfian'

/**
 * YCSB's core workloads as the bench runs them (site.ycsb.workloads.CoreWorkload with
 * workloads/workload{a,b,c,f}): one record per key, one field of `value` bytes, keys
 * chosen by the scrambled zipfian (constant 0.99) over the records inserted. Pure apart
 * from the store the operations call.
 */

/** What every system offers the workloads. Every call throws when the system answered anything but success. */
export interface YcsbStore {
  insert(key: string, value: Buffer): Promise<void>
  read(key: string): Promise<void>
  update(key: string, value: Buffer): Promise<void>
  /** Reads, then writes only if the record is unchanged since; false when another writer got there first. */
  readModifyWrite(key: string, value: Buffer): Promise<boolean>
  close(): Promise<void>
}

export interface Workload {
  id: 'A' | 'B' | 'C' | 'F'
  label: string
  /** Proportions; they add up to 1. */
  read: number
  update: number
  readModifyWrite: number
}

export const WORKLOADS: readonly Workload[] = [
  { id: 'A', label: 'update heavy: 50% read, 50% update', read: 0.5, update: 0.5, readModifyWrite: 0 },
  { id: 'B', label: 'read mostly: 95% read, 5% update', read: 0.95, update: 0.05, readModifyWrite: 0 },
  { id: 'C', label: 'read only', read: 1, update: 0, readModifyWrite: 0 },
  { id: 'F', label: 'read-modify-write: 50% read, 50% read-modify-write', read: 0.5, update: 0, readModifyWrite: 0.5 }
]

/** YCSB names records "user" + a number; the number is already scrambled by the key chooser. */
export function ycsbKey (record: number): string {
  return `user${record}`
}

export type OpKind = 'read' | 'update' | 'readModifyWrite'

/** The operation a uniform draw `u` in [0, 1) picks, as YCSB's DiscreteGenerator does. */
export function chooseOp (w: Workload, u: number): OpKind {
  if (u < w.read) return 'read'
  if (u < w.read + w.update) return 'update'
  return 'readModifyWrite'
}

export interface WorkloadRun {
  op: Operation
  /** Read-modify-writes whose write lost to a concurrent writer (counted as done: the work was). */
  conflicts(): number
}

export function workloadOperation (store: YcsbStore, w: Workload, records: number, value: Buffer, seed: number): WorkloadRun {
  const random = seededRandom(seed)
  const keys = new ScrambledZipfianGenerator(records, random)
  let conflicts = 0
  const op: Operation = async () => {
    const key = ycsbKey(keys.next())
    switch (chooseOp(w, random())) {
      case 'read': await store.read(key); break
      case 'update': await store.update(key, value); break
      case 'readModifyWrite': if (!await store.readModifyWrite(key, value)) conflicts++; break
    }
    return 1
  }
  return { op, conflicts: () => conflicts }
}

/** The YCSB summary: one row per phase, one column per system (ops/s, p50, server CPU per op). */
export function formatYcsbTable (measurements: readonly Measurement[], systems: readonly string[], phases: readonly string[]): string {
  const find = (system: string, phase: string): Measurement | undefined =>
    measurements.find((m) => m.scenario === 'ycsb' && m.name === `${system} ${phase}`)
  const cell = (m: Measurement | undefined): string => {
    if (m === undefined) return '-'
    const ops = Math.round(m.reqPerSec).toLocaleString('en-US')
    const cpu = m.serverCpuUsPerOp === undefined ? '' : `, ${Math.round(m.serverCpuUsPerOp).toLocaleString('en-US')} µs CPU`
    const errors = m.errors === 0 ? '' : `, ${m.errors} errors`
    return `${ops} (p50 ${m.latencyMs.p50.toFixed(1)} ms${cpu}${errors})`
  }
  const present = systems.filter((s) => phases.some((p) => find(s, p) !== undefined))
  if (present.length === 0) return '(no YCSB measurements)'
  const header = ['| phase', ...present.map((s) => ` ${s} ops/s`)].join(' |') + ' |'
  const rule = ['| ---', ...present.map(() => ' ---')].join(' |') + ' |'
  const rows = phases.map((p) => ['| ' + (p === 'insert' ? 'insert' : `workload ${p}`), ...present.map((s) => ` ${cell(find(s, p))}`)].join(' |') + ' |')
  return [header, rule, ...rows].join('\n')
}
