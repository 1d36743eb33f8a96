import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startLocalCluster } from '../src/local/cluster'
import { createClient } from '../src/client'
import { kvPath } from '../src/protocol/key'
import { runScenario } from './load'
import { benchKey } from './preload'

/**
 * `node dist/bench/watch.js [--seconds 10] [--connections 16]`: what change streams cost
 * and deliver, in one run on one cluster (2 groups, 1 replica each, 1 worker per node):
 * PUT throughput through the router with 0, 1 and 10 watchers of the written prefix, and
 * with 1 watcher asking for values (values=1: each event carries its 100-byte value), and
 * the events per second one watcher receives meanwhile, with the share of the run's
 * acknowledged PUTs it received. Prints one JSON object with the ratios against no
 * watchers. A warm-up run goes first (not reported), and the run without watchers is
 * repeated last: on a shared machine the spread between the two baselines says how much
 * the ratios mean.
 */

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, connections: { type: 'string', default: '16' } } })
  const seconds = Number(values.seconds)
  const connections = Number(values.connections)
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-bench-watch-'))
  const cluster = await startLocalCluster({ dataDir: dir, groups: 2, replicas: 1, workers: 1 })
  const client = createClient({ url: cluster.router.url })
  try {
    const paths = Array.from({ length: 2000 }, (_, i) => kvPath(benchKey(i)))
    const scenario = { target: 'router', url: cluster.router.url, method: 'PUT' as const, paths, body: Buffer.alloc(100, 'x') }
    const results: Record<string, unknown> = {}
    await runScenario({ ...scenario, name: 'warm-up' }, { connections, durationS: 3 })
    const rates: Record<string, number> = {}
    const runs = [['watchers0', 0, false], ['watchers1', 1, false], ['watchers10', 10, false], ['watchers1values', 1, true], ['watchers0again', 0, false]] as const
    for (const [label, watchers, values] of runs) {
      const abort = new AbortController()
      const counts = Array.from({ length: watchers }, () => 0)
      const streams = counts.map(async (_, i) => {
        try {
          for await (const e of client.watch({ prefix: '', values, signal: abort.signal })) if (e.type !== 'progress') counts[i]!++
        } catch { /* aborted */ }
      })
      // Let every stream open before the load starts.
      await new Promise((resolve) => setTimeout(resolve, 500))
      const run = await runScenario({ ...scenario, name: `PUT with ${watchers} watchers` }, { connections, durationS: seconds })
      // The events of the run's writes that are still in flight reach the watchers shortly after.
      await new Promise((resolve) => setTimeout(resolve, 1000))
      abort.abort()
      await Promise.all(streams)
      rates[label] = run.reqPerSec
      results[label] = {
        putPerSec: Math.round(run.reqPerSec),
        p99Ms: run.latencyMs.p99,
        errors: run.errors + run.non2xx,
        eventsPerSecOneWatcher: watchers > 0 ? Math.round((counts[0] ?? 0) / (seconds + 1)) : null,
        // At least once: a little over 1 is repeats; well under 1 would be a watcher falling behind.
        eventsPerPutOneWatcher: watchers > 0 ? Math.round((counts[0] ?? 0) / Math.max(1, run.requests - run.errors - run.non2xx) * 100) / 100 : null,
        eventsPerWatcher: counts
      }
    }
    // Against the mean of the two runs without watchers (one before, one after).
    const base = ((rates.watchers0 ?? 0) + (rates.watchers0again ?? 0)) / 2
    const ratio = (label: string): number => Math.round((rates[label] ?? 0) / base * 100) / 100
    console.log(JSON.stringify({ seconds, connections, results, putRatio: { watchers1: ratio('watchers1'), watchers10: ratio('watchers10'), watchers1values: ratio('watchers1values') }, baselineSpread: Math.round(Math.abs((rates.watchers0 ?? 0) - (rates.watchers0again ?? 0)) / base * 100) / 100 }, null, 2))
  } finally {
    await client.close()
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
