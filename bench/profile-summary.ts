import { readFileSync } from 'node:fs'

/**
 * `node dist/bench/profile-summary.js <file.cpuprofile> [top]`: where a process spent its
 * CPU, from a V8 profile written by `node --cpu-prof` (the bench's --cpu-prof option):
 * self time by area (a package, node internals, shardkv's own code, GC, idle) and by
 * function. The summary is a pure function of the parsed profile.
 */

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame }
export interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

export interface ProfileSummary {
  /** Sampled wall time, ms. */
  totalMs: number
  /** Idle (waiting in the event loop), ms. */
  idleMs: number
  byArea: Array<{ area: string, ms: number }>
  byFunction: Array<{ fn: string, area: string, ms: number }>
}

/** Which part of the process a frame belongs to. */
export function areaOf (frame: CallFrame): string {
  const { url, functionName } = frame
  if (url === '') {
    if (functionName === '(idle)') return '(idle)'
    if (functionName === '(garbage collector)') return '(gc)'
    if (functionName === '(program)') return '(program: native, not attributed)'
    return '(native)'
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg !== null) return pkg[1] as string
  if (url.startsWith('node:')) return 'node internals'
  const own = /\/dist\/(router|shards|src\/[^/]+|src)\//.exec(url)
  if (own !== null) return `shardkv ${own[1] as string}`
  return url
}

export function summarize (profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const area = new Map<string, number>()
  const fn = new Map<string, { area: string, ms: number }>()
  let totalUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i] as number)
    // A sample's time is the delta to the next sample; the first delta is from the start.
    const us = Math.max(0, profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0)
    if (node === undefined) continue
    totalUs += us
    const a = areaOf(node.callFrame)
    area.set(a, (area.get(a) ?? 0) + us)
    const { functionName, url, lineNumber } = node.callFrame
    const key = `${functionName === '' ? '(anonymous)' : functionName} ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`
    const f = fn.get(key) ?? { area: a, ms: 0 }
    f.ms += us
    fn.set(key, f)
  }
  const toMs = (us: number): number => us / 1000
  return {
    totalMs: toMs(totalUs),
    idleMs: toMs(area.get('(idle)') ?? 0),
    byArea: [...area].map(([a, us]) => ({ area: a, ms: toMs(us) })).sort((x, y) => y.ms - x.ms),
    byFunction: [...fn].map(([k, v]) => ({ fn: k, area: v.area, ms: toMs(v.ms) })).sort((x, y) => y.ms - x.ms).slice(0, top)
  }
}

export function formatSummary (s: ProfileSummary): string {
  const busy = s.totalMs - s.idleMs
  const pct = (ms: number, of: number): string => `${(of === 0 ? 0 : 100 * ms / of).toFixed(1).padStart(5)}%`
  const lines = [`sampled ${(s.totalMs / 1000).toFixed(1)} s, busy ${(busy / 1000).toFixed(1)} s (${pct(busy, s.totalMs).trim()}); shares below are of busy time`, '', 'by area:']
  for (const a of s.byArea) if (a.area !== '(idle)') lines.push(`  ${pct(a.ms, busy)}  ${a.area}`)
  lines.push('', 'by function (self time):')
  for (const f of s.byFunction) if (f.area !== '(idle)') lines.push(`  ${pct(f.ms, busy)}  ${f.fn}  [${f.area}]`)
  return lines.join('\n')
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2)
  if (file === undefined || file === '--help') {
    console.log('Usage: node dist/bench/profile-summary.js <file.cpuprofile> [top functions, default 25]')
    process.exitCode = file === undefined ? 2 : 0
  } else {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
    console.log(formatSummary(summarize(profile, top === undefined ? 25 : Number(top))))
  }
}
