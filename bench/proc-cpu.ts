import { readdirSync, readFileSync } from 'node:fs'

/**
 * Server CPU of a measurement, cheaply: the utime + stime of a system's processes and of
 * all their descendants (a shard node's workers), read from /proc/<pid>/stat before and
 * after a phase. Linux only; elsewhere (or when /proc cannot be read) it reports nothing
 * rather than a wrong number. A process that exits during the phase takes its ticks
 * with it, so this is a floor.
 */

/** USER_HZ: 100 on every Linux architecture the bench runs on (getconf CLK_TCK). */
const TICKS_PER_SECOND = 100

export interface ProcStat { pid: number, ppid: number, ticks: number }

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
export function parseProcStat (text: string): ProcStat | undefined {
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  if (open < 0 || close < open) return undefined
  const pid = Number(text.slice(0, open).trim())
  // After ")": state(3) ppid(4) ... utime(14) stime(15), so index 0 here is field 3.
  const f = text.slice(close + 2).split(' ')
  const ppid = Number(f[1])
  const utime = Number(f[11])
  const stime = Number(f[12])
  if (![pid, ppid, utime, stime].every(Number.isFinite)) return undefined
  return { pid, ppid, ticks: utime + stime }
}

/** The roots and every descendant, from one snapshot of the process table. */
export function treeTicks (stats: readonly ProcStat[], roots: readonly number[]): number {
  const children = new Map<number, ProcStat[]>()
  for (const s of stats) {
    const list = children.get(s.ppid)
    if (list === undefined) children.set(s.ppid, [s])
    else list.push(s)
  }
  const byPid = new Map(stats.map((s) => [s.pid, s]))
  const seen = new Set<number>()
  const todo = [...roots]
  let ticks = 0
  while (todo.length > 0) {
    const pid = todo.pop() as number
    if (seen.has(pid)) continue
    seen.add(pid)
    ticks += byPid.get(pid)?.ticks ?? 0
    for (const c of children.get(pid) ?? []) todo.push(c.pid)
  }
  return ticks
}

/** Every process's /proc/<pid>/stat, parsed (processes that exit meanwhile are skipped). */
export function processTable (): ProcStat[] {
  const out: ProcStat[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const s = parseProcStat(readFileSync(`/proc/${name}/stat`, 'latin1'))
      if (s !== undefined) out.push(s)
    } catch { /* exited meanwhile */ }
  }
  return out
}

/** CPU seconds used so far by the trees rooted at `pids`; undefined when /proc is not there. */
export function cpuSeconds (pids: readonly number[]): number | undefined {
  if (process.platform !== 'linux' || pids.length === 0) return undefined
  try {
    return treeTicks(processTable(), pids) / TICKS_PER_SECOND
  } catch {
    return undefined
  }
}
