import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import type { Suite } from './suite'
import type { Stoppable } from './context'
import { ensureBinary, sleep } from './daemon'
import { startEtcdCluster } from './etcd-peer'
import { roleOf, settled, summarize, treeMemory, type TreeFootprint } from './proc-memory'

/**
 * The footprint scenario: the idle memory of the quick-start cluster, started exactly as
 * `npm start` starts it (dist/scripts/start-local.js, secure by default, its own data dir
 * and free ports), once as it is (the router and the coordinator threads of the launcher),
 * once with `--processes` (each its own process) and once with `--workers <cores>` (the
 * default before issue 10), beside a 3-member etcd's. Each is left to settle (its
 * total RSS steady within 1% over 5 one-second samples), then every process of its tree
 * is counted and its memory summed (proc-memory.ts: VmRSS, PSS, private).
 */

export interface Footprint extends TreeFootprint {
  name: string
  /** Seconds from listening to the sample reported; `steady` false when it never settled. */
  settleS: number
  steady: boolean
}

/** Issue 10: the idle quick-start cluster (its summed VmRSS, as the issue measured it). */
export const FOOTPRINT_TARGET_MB = 400
const SETTLE_MIN_S = 10
const SETTLE_MAX_S = 90
const UP_LINE = 'shardkv local cluster is up'

interface Launcher extends Stoppable {
  output: () => string
}

/** `start-local.js` in its own process group, stopped as Ctrl-C stops it (SIGINT), by pid. */
function spawnLauncher (dir: string, args: string[]): { launcher: Launcher, up: Promise<void> } {
  const script = resolve(__dirname, '..', 'scripts', 'start-local.js')
  const child = spawn(process.execPath, [script, '--data-dir', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  let exited: number | null | undefined
  const done = new Promise<void>((resolve) => child.once('exit', (code) => { exited = code; resolve() }))
  const up = new Promise<void>((resolve, reject) => {
    const keep = (b: Buffer): void => {
      out = (out + b.toString('utf8')).slice(-8000)
      if (out.includes(UP_LINE)) resolve()
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    void done.then(() => reject(new Error(`start-local exited (code ${String(exited)}): ${out.trim().split('\n').slice(-3).join(' | ')}`)))
  })
  const pid = child.pid ?? -1
  const kill = (): void => { try { process.kill(-pid, 'SIGKILL') } catch { /* gone */ } }
  const onExit = (): void => { if (exited === undefined) kill() }
  process.on('exit', onExit)
  let stopping: Promise<void> | undefined
  const launcher: Launcher = {
    name: 'start-local',
    pid,
    output: () => out,
    stop: (timeoutMs = 30_000) => {
      stopping ??= (async () => {
        process.off('exit', onExit)
        if (exited !== undefined) return
        // Its nodes run in their own process groups: the launcher stops them (router first).
        try { process.kill(pid, 'SIGINT') } catch { /* gone */ }
        const timer = setTimeout(kill, timeoutMs)
        await done
        clearTimeout(timer)
      })()
      return stopping
    }
  }
  return { launcher, up }
}

/** Samples the trees once a second until they settle (or SETTLE_MAX_S); the last sample. `role`: every process's, else by command line. */
async function settle (suite: Suite, roots: number[], role?: string): Promise<{ summary: TreeFootprint, settleS: number, steady: boolean }> {
  const samples: TreeFootprint[] = []
  const t0 = Date.now()
  for (;;) {
    suite.ctx.signal.throwIfAborted()
    const procs = treeMemory(roots)
    samples.push(summarize(procs, (p) => role ?? roleOf(p, procs)))
    const elapsed = (Date.now() - t0) / 1000
    const steady = settled(samples)
    if ((steady && elapsed >= SETTLE_MIN_S) || elapsed >= SETTLE_MAX_S) return { summary: samples[samples.length - 1] as TreeFootprint, settleS: Math.round(elapsed), steady }
    await sleep(1000)
  }
}

/** The quick-start cluster through start-local, on free ports (another set when some are taken). */
async function quickStart (suite: Suite, name: string, args: string[]): Promise<Footprint> {
  const { ctx } = suite
  for (let attempt = 1; ; attempt++) {
    // Shard ports base..base+2 and base+100.., the router at base+50, peers at +10000.
    const base = 20_000 + 200 * Math.floor(Math.random() * 100)
    const { launcher, up } = spawnLauncher(ctx.scenarioDir('footprint'), ['--router-port', String(base + 50), '--base-port', String(base), ...args])
    ctx.trackOther(launcher)
    try {
      await up
      const { summary, settleS, steady } = await settle(suite, [launcher.pid])
      return { name, ...summary, settleS, steady }
    } catch (err) {
      if (attempt >= 3 || !/in use|planned for both/.test((err as Error).message)) throw err
    } finally {
      await ctx.stop({ launched: [], others: [launcher] })
    }
  }
}

async function etcd (suite: Suite): Promise<Footprint | string> {
  const { ctx } = suite
  const bin = ensureBinary('etcd', 'etcd-server', resolve(ctx.tmp, 'apt-get.log'))
  if ('skip' in bin) return bin.skip
  const peer = await startEtcdCluster(ctx, bin.path, ctx.scenarioDir('footprint-etcd'), 3)
  try {
    const { summary, settleS, steady } = await settle(suite, peer.daemons.map((d) => d.pid), 'etcd member')
    return { name: '3-member etcd', ...summary, settleS, steady }
  } finally {
    await ctx.stop({ launched: [], others: peer.daemons })
  }
}

export async function footprint (suite: Suite): Promise<void> {
  const cores = availableParallelism()
  const shapes: Array<[string, string[]]> = [
    ['npm start', []],
    // The router and the coordinator as processes of their own, as before they became threads of the launcher.
    ['npm start -- --processes', ['--processes']],
    [`npm start -- --workers ${cores}`, ['--workers', String(cores)]]
  ]
  for (const [name, args] of shapes) suite.recordFootprint(await quickStart(suite, name, args))
  const e = await etcd(suite)
  if (typeof e === 'string') suite.skip('footprint', 'etcd', e)
  else suite.recordFootprint(e)
}

const mb = (kb: number): string => `${Math.round(kb / 1024)} MB`

/** One line per tree, then one per role (per-process VmRSS), for the console and docs. */
export function formatFootprint (f: Footprint): string {
  const head = `${f.name}: ${f.processes} processes, VmRSS ${mb(f.rssKb)}, PSS ${mb(f.pssKb)}, private ${mb(f.privateKb)}` +
    (f.steady ? ` (settled after ${f.settleS} s)` : ` (not steady after ${f.settleS} s)`)
  const roles = f.roles.map((r) => `${r.role} ${r.processes} × ${mb(r.rssKb / r.processes)}`).join(', ')
  return `${head}\n      VmRSS per process: ${roles}`
}
