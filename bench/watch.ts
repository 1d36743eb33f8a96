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
 * the events per second one watcher receives meanwhile. Prints one JSON object.
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
    let base = 0
    for (const watchers of [0, 1, 10]) {
      const abort = new AbortController()
      const counts = Array.from({ length: watchers }, () => 0)
      const streams = counts.map(async (_, i) => {
        try {
          for await (const e of client.watch({ prefix: '', signal: abort.signal })) if (e.type !== 'progress') counts[i]!++
        } catch { /* aborted */ }
      })
      // Let every stream open before the load starts.
      await new Promise((resolve) => setTimeout(resolve, 500))
      const run = await runScenario({ ...scenario, name: `PUT with ${watchers} watchers` }, { connections, durationS: seconds })
      // The events of the run's writes that are still in flight reach the watchers shortly after.
      await new Promise((resolve) => setTimeout(resolve, 1000))
      abort.abort()
      await Promise.all(streams)
      if (watchers === 0) base = run.reqPerSec
      results[`watchers${watchers}`] = {
        putPerSec: Math.round(run.reqPerSec),
        p99Ms: run.latencyMs.p99,
        errors: run.errors + run.non2xx,
        ratioToNoWatcher: base > 0 ? Math.round(run.reqPerSec / base * 100) / 100 : null,
        eventsPerSecOneWatcher: watchers > 0 ? Math.round((counts[0] ?? 0) / (seconds + 1)) : null,
        eventsPerWatcher: counts
      }
    }
    console.log(JSON.stringify({ seconds, connections, results }, null, 2))
  } finally {
    await client.close()
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
