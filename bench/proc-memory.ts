import { readFileSync } from 'node:fs'
import { processTable, type ProcStat } from './proc-cpu'

/**
 * Memory of a process tree, from /proc (Linux only): every process's VmRSS (from
 * /proc/<pid>/status, what `ps` and `top` show and what the issue measured), its PSS
 * and its private pages (from /proc/<pid>/smaps_rollup). They differ in how pages
 * shared between processes count: RSS counts them in every process that maps them
 * (the node binary's ~40 MB of code and read-only data, in each of N node processes),
 * PSS divides them among those processes (the sum of PSS is what the tree takes from
 * RAM), private counts only pages no other process maps.
 */

export interface ProcMemory {
  pid: number
  ppid: number
  /** What the process runs (its command line), for naming its role. */
  cmdline: string
  rssKb: number
  pssKb: number
  privateKb: number
}

/** VmRSS in kB from /proc/<pid>/status text; undefined when absent (a kernel thread, a zombie). */
export function parseVmRss (status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  return m === null ? undefined : Number(m[1])
}

/** Pss and Private_Clean + Private_Dirty in kB from /proc/<pid>/smaps_rollup text. */
export function parseSmapsRollup (text: string): { pssKb: number, privateKb: number } | undefined {
  const field = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text)
    return m === null ? undefined : Number(m[1])
  }
  const pss = field('Pss')
  const clean = field('Private_Clean')
  const dirty = field('Private_Dirty')
  if (pss === undefined || clean === undefined || dirty === undefined) return undefined
  return { pssKb: pss, privateKb: clean + dirty }
}

/** The roots and all their descendants, from one snapshot of the process table (parents before children). */
export function treePids (stats: readonly ProcStat[], roots: readonly number[]): number[] {
  const children = new Map<number, number[]>()
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s.pid])
  const alive = new Set(stats.map((s) => s.pid))
  const out: number[] = []
  const todo = roots.filter((r) => alive.has(r))
  const seen = new Set<number>()
  while (todo.length > 0) {
    const pid = todo.shift() as number
    if (seen.has(pid)) continue
    seen.add(pid)
    out.push(pid)
    todo.push(...(children.get(pid) ?? []))
  }
  return out
}

/** Every live process of the trees rooted at `roots`, with its memory; [] where /proc is not there. */
export function treeMemory (roots: readonly number[]): ProcMemory[] {
  if (process.platform !== 'linux') return []
  const stats = processTable()
  const ppid = new Map(stats.map((s) => [s.pid, s.ppid]))
  const out: ProcMemory[] = []
  for (const pid of treePids(stats, roots)) {
    try {
      const rss = parseVmRss(readFileSync(`/proc/${pid}/status`, 'latin1'))
      const rollup = parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))
      if (rss === undefined || rollup === undefined) continue
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim()
      out.push({ pid, ppid: ppid.get(pid) ?? 0, cmdline, rssKb: rss, ...rollup })
    } catch { /* exited meanwhile */ }
  }
  return out
}

/** What a process of a shardkv tree is, by its command line (a shard worker: a shard node whose parent is one). */
export function roleOf (p: Pick<ProcMemory, 'pid' | 'ppid' | 'cmdline'>, all: ReadonlyArray<Pick<ProcMemory, 'pid' | 'cmdline'>>): string {
  const isShard = (cmd: string): boolean => /shards\/main\.js/.test(cmd)
  if (isShard(p.cmdline)) return isShard(all.find((q) => q.pid === p.ppid)?.cmdline ?? '') ? 'shard worker' : 'shard node'
  if (/router\/main\.js/.test(p.cmdline)) return 'router'
  if (/coordinator\/main\.js/.test(p.cmdline)) return 'coordinator'
  if (/start-local\.js|shardkv\.js/.test(p.cmdline)) {
    // Without --processes, npm start's router and coordinator are threads of the launcher.
    return all.some((q) => /router\/main\.js/.test(q.cmdline)) ? 'launcher' : 'launcher with router and coordinator threads'
  }
  return 'other'
}

export interface RoleMemory { role: string, processes: number, rssKb: number, pssKb: number, privateKb: number }

export interface TreeFootprint {
  processes: number
  rssKb: number
  pssKb: number
  privateKb: number
  roles: RoleMemory[]
}

/** Sums a tree's memory, in total and by role (roles in first-seen order). */
export function summarize (procs: readonly ProcMemory[], role: (p: ProcMemory) => string): TreeFootprint {
  const roles = new Map<string, RoleMemory>()
  for (const p of procs) {
    const name = role(p)
    const r = roles.get(name) ?? { role: name, processes: 0, rssKb: 0, pssKb: 0, privateKb: 0 }
    r.processes++
    r.rssKb += p.rssKb
    r.pssKb += p.pssKb
    r.privateKb += p.privateKb
    roles.set(name, r)
  }
  const sum = (f: (p: ProcMemory) => number): number => procs.reduce((a, p) => a + f(p), 0)
  return { processes: procs.length, rssKb: sum((p) => p.rssKb), pssKb: sum((p) => p.pssKb), privateKb: sum((p) => p.privateKb), roles: [...roles.values()] }
}

/**
 * Settled: the last `window` totals lie within `tolerance` (a fraction) of each other
 * and the process count did not change among them (a restarting process, a worker still
 * forking).
 */
export function settled (samples: ReadonlyArray<{ rssKb: number, processes: number }>, window = 5, tolerance = 0.01): boolean {
  if (samples.length < window) return false
  const last = samples.slice(-window)
  const rss = last.map((s) => s.rssKb)
  const max = Math.max(...rss)
  const min = Math.min(...rss)
  return last.every((s) => s.processes === last[0]?.processes) && max - min <= tolerance * max
}
