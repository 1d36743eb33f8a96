import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Where the time of one failover goes, read back from the processes' own JSON log lines
 * (pino, ISO timestamps from one machine's clock): from the SIGKILL of a group's primary
 * to the client's first acknowledged write of that group. Each step is the time of its
 * first event after the kill, so a step the logs do not show stays undefined rather
 * than guessed. In the order they happen:
 *
 *  noticed        the coordinator's first failed lease renewal or "down" health check
 *  leaseOver      the end of the last lease the dead primary may hold (the failover line's leaseUntil)
 *  promoting      the promotion's map transition began (failover time minus transitionMs)
 *  installed      the last node took the new map (map-installed: install comes before publish)
 *  published      the coordinator published the map (map-changed)
 *  leased         the new primary's first lease was granted (lease-granted)
 *  routed         the router follows the new map (map-followed)
 *  acked          the client's write was acknowledged (measured by the bench)
 */

export type LogLine = Record<string, unknown> & { time: number }

export const STEPS = ['noticed', 'leaseOver', 'promoting', 'installed', 'published', 'leased', 'routed', 'acked'] as const
export type Step = typeof STEPS[number]
export type Timeline = Partial<Record<Step, number>>

/** Every JSON line of every *.log file in `dir`, with `time` as ms since the epoch. */
export function readLogLines (dir: string): LogLine[] {
  const out: LogLine[] = []
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.log')) continue
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue
      try {
        const e = JSON.parse(line) as Record<string, unknown>
        const time = typeof e.time === 'string' ? Date.parse(e.time) : Number.NaN
        if (Number.isFinite(time)) out.push({ ...e, time, file: name })
      } catch { /* a line cut by the kill */ }
    }
  }
  return out.sort((a, b) => a.time - b.time)
}

/** The steps of the failover of `group` (primary `victim`) after a kill at `killedAt`, as ms after the kill. */
export function failoverTimeline (lines: readonly LogLine[], o: { group: string, victim: string, killedAt: number, ackedAt: number }): Timeline {
  const after = lines.filter((l) => l.time >= o.killedAt)
  const first = (pred: (l: LogLine) => boolean): number | undefined => after.find(pred)?.time
  const rel = (t: number | undefined): number | undefined => t === undefined ? undefined : t - o.killedAt
  const failover = after.find((l) => l.event === 'failover' && l.group === o.group && l.from === o.victim)
  const epoch = typeof failover?.epoch === 'number' ? failover.epoch : undefined
  const term = typeof failover?.term === 'number' ? failover.term : undefined
  const published = epoch === undefined ? undefined : first((l) => l.event === 'map-changed' && l.epoch === epoch)
  // The installs of the transition itself, not the restarted node's catch-up later.
  const installs = published === undefined ? [] : after.filter((l) => l.event === 'map-installed' && l.epoch === epoch && l.time <= published)
  const leaseUntil = typeof failover?.leaseUntil === 'string' ? Date.parse(failover.leaseUntil) : undefined
  return {
    noticed: rel(first((l) => (l.event === 'lease-failed' && l.group === o.group) || (l.event === 'node-health' && l.url === o.victim && l.health === 'down'))),
    leaseOver: rel(leaseUntil),
    promoting: rel(failover === undefined ? undefined : failover.time - Number(failover.transitionMs ?? 0)),
    installed: rel(installs.length === 0 ? undefined : Math.max(...installs.map((l) => l.time))),
    published: rel(published),
    leased: rel(term === undefined ? undefined : first((l) => l.event === 'lease-granted' && l.group === o.group && l.term === term)),
    routed: rel(epoch === undefined ? undefined : first((l) => l.event === 'map-followed' && typeof l.epoch === 'number' && l.epoch >= epoch)),
    acked: o.ackedAt - o.killedAt
  }
}

/** The median of each step over several failovers (steps missing from a timeline are left out of its median). */
export function medianTimeline (timelines: readonly Timeline[]): Timeline {
  const out: Timeline = {}
  for (const step of STEPS) {
    const xs = timelines.map((t) => t[step]).filter((x): x is number => x !== undefined).sort((a, b) => a - b)
    if (xs.length === 0) continue
    const mid = Math.floor(xs.length / 2)
    out[step] = xs.length % 2 === 1 ? xs[mid] as number : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2
  }
  return out
}

/** One line: each step's ms after the kill and, in brackets, its own share (ms since the step before). */
export function describeTimeline (t: Timeline): string {
  let previous = 0
  const parts: string[] = []
  for (const step of STEPS) {
    const at = t[step]
    if (at === undefined) {
      parts.push(`${step} ?`)
      continue
    }
    parts.push(`${step} ${Math.round(at)} (+${Math.round(at - previous)})`)
    previous = at
  }
  return parts.join(' · ')
}
