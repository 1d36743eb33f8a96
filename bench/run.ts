import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalCluster, type LocalCluster } from '../src/local/cluster'
import { stopAll, type LaunchedProcess } from '../src/local/launcher'
import { primaryOf, ringOf, validateMap, type ClusterMap } from '../src/membership/map'
import { kvPath } from '../src/protocol/key'
import { CLUSTER_PATH, HEADER } from '../src/protocol/wire'
import { runScenario, type Scenario, type ScenarioResult, type Stoppable } from './load'
import { HELP, parseBenchOptions, UsageError, type BenchOptions } from './options'
import { benchKey, preload } from './preload'
import { formatRatios, formatTable, ratios, writeReport, type Environment } from './report'

/**
 * `npm run bench`: the throughput and latency of the real system, from one command.
 * Starts a private cluster in a temp dir, preloads keys, measures routed and direct
 * GET/PUT under the same fixed load in one run (so their ratio is meaningful), prints a
 * table and writes bench/results/<timestamp>.json. Every process it started is stopped
 * and the temp dir removed however the run ends.
 */

const HOST = '127.0.0.1'

async function fetchMap (routerUrl: string): Promise<ClusterMap> {
  const res = await fetch(routerUrl + CLUSTER_PATH)
  if (!res.ok) throw new Error(`GET ${CLUSTER_PATH} on the router answered ${res.status}: ${await res.text()}`)
  // /cluster adds runtime fields (health, pid, points) around the map; validateMap ignores them.
  return validateMap(await res.json())
}

function environment (): Environment {
  return { node: process.version, platform: `${process.platform}/${process.arch}`, cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown' }
}

interface Plan {
  scenarios: Scenario[]
  groups: Array<{ id: string, url: string, keys: number }>
  directGroup: string
}

/** Routed scenarios use every key; direct ones only the keys the ring gives to one group. */
function plan (map: ClusterMap, routerUrl: string, keys: readonly string[], value: Buffer): Plan {
  const ring = ringOf(map)
  const byGroup = new Map<string, string[]>()
  for (const key of keys) {
    const owner = ring.ownerOf(key) ?? 'none'
    let paths = byGroup.get(owner)
    if (paths === undefined) byGroup.set(owner, paths = [])
    paths.push(kvPath(key))
  }
  const directGroup = map.groups[0]?.id
  const directUrl = directGroup === undefined ? undefined : primaryOf(map, directGroup)?.url
  if (directGroup === undefined || directUrl === undefined) throw new Error('the cluster map has no group with a primary')
  const direct = byGroup.get(directGroup) ?? []
  const all = keys.map(kvPath)
  // A ring-aware client sends the epoch it routed by, as the router does.
  const directHeaders = { [HEADER.epoch]: String(map.epoch) }
  const routedTarget = `router, ${map.groups.length} group${map.groups.length === 1 ? '' : 's'}`
  const directTarget = `${directGroup} node only`
  return {
    directGroup,
    groups: map.groups.map((g) => ({ id: g.id, url: primaryOf(map, g.id)?.url ?? '', keys: byGroup.get(g.id)?.length ?? 0 })),
    scenarios: [
      { name: 'routed GET', target: routedTarget, url: routerUrl, method: 'GET', paths: all },
      { name: 'routed PUT', target: routedTarget, url: routerUrl, method: 'PUT', paths: all, body: value },
      { name: 'direct GET', target: directTarget, url: directUrl, method: 'GET', paths: direct, headers: directHeaders },
      { name: 'direct PUT', target: directTarget, url: directUrl, method: 'PUT', paths: direct, body: value, headers: directHeaders }
    ]
  }
}

interface RunContext {
  tmp: string
  /** Every process started so far, for cleanup. */
  launched: LaunchedProcess[]
  /** The load running now, so a signal can stop it. */
  setRunning: (r: Stoppable | undefined) => void
  /** Aborted by SIGINT/SIGTERM: no further step starts. */
  signal: AbortSignal
}

async function bench (opts: BenchOptions, ctx: RunContext): Promise<number> {
  const { tmp, launched, setRunning, signal } = ctx
  const env = environment()
  console.log(`shardkv bench: node ${env.node}, ${env.cores} cores (${env.cpu}), ${env.platform}`)
  console.log(`  ${opts.groups} groups × ${opts.workers} worker${opts.workers === 1 ? '' : 's'}, ${opts.connections} connections, ${opts.duration} s per scenario (+${opts.warmup} s warm-up), ${opts.keys} keys of ${opts.valueBytes} bytes`)
  const startedAt = new Date().toISOString()

  const cluster: LocalCluster = await startLocalCluster({
    dataDir: join(tmp, 'data'),
    logDir: join(tmp, 'logs'),
    groups: opts.groups,
    host: HOST,
    workers: opts.workers,
    detached: true,
    onLaunched: (p) => launched.push(p)
  })
  console.log(`  cluster up: router ${cluster.router.url}, ${cluster.shards.map((s) => `${s.group} ${s.process.url}`).join(', ')}`)

  signal.throwIfAborted()
  const value = Buffer.alloc(opts.valueBytes, 'v')
  const keys = Array.from({ length: opts.keys }, (_, i) => benchKey(i))
  const t0 = Date.now()
  await preload(cluster.router.url, keys, value)
  console.log(`  preloaded ${keys.length} keys in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  signal.throwIfAborted()
  const map = await fetchMap(cluster.router.url)
  const { scenarios, groups, directGroup } = plan(map, cluster.router.url, keys, value)
  console.log(`  keys per group: ${groups.map((g) => `${g.id} ${g.keys}`).join(', ')}; direct scenarios use ${directGroup}`)

  const results: ScenarioResult[] = []
  for (const s of scenarios) {
    const settings = { connections: opts.connections, durationS: opts.duration }
    signal.throwIfAborted()
    if (opts.warmup > 0) await runScenario(s, { ...settings, durationS: opts.warmup }, setRunning)
    signal.throwIfAborted()
    process.stdout.write(`  ${s.name.padEnd(10)} ${opts.duration} s ... `)
    const r = await runScenario(s, settings, setRunning)
    setRunning(undefined)
    signal.throwIfAborted()
    console.log(`${Math.round(r.reqPerSec)} req/s`)
    results.push(r)
  }

  const r = ratios(results)
  console.log('')
  console.log(formatTable(results))
  console.log('')
  console.log(formatRatios(r))
  const file = writeReport({
    startedAt,
    finishedAt: new Date().toISOString(),
    environment: env,
    options: { duration: opts.duration, warmup: opts.warmup, connections: opts.connections, keys: opts.keys, valueBytes: opts.valueBytes, workers: opts.workers, groups: opts.groups },
    cluster: { routerUrl: cluster.router.url, groups, directGroup },
    scenarios: results,
    ratios: r
  })
  console.log(`results: ${file}`)

  // Numbers from a run with failed requests would mislead: make the run fail visibly.
  const failed = results.filter((x) => x.errors > 0 || x.non2xx > 0)
  for (const x of failed) {
    console.error(`warning: ${x.name}: ${x.errors} connection errors, ${x.non2xx} non-2xx (status counts ${JSON.stringify(x.statusCodes)})`)
  }
  return failed.length === 0 ? 0 : 1
}

async function main (): Promise<number> {
  let opts: BenchOptions | 'help'
  try {
    opts = parseBenchOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`bench: ${err.message}\n(see --help)`)
    return 2
  }
  if (opts === 'help') {
    console.log(HELP)
    return 0
  }
  const keep = opts.keep

  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-bench-'))
  const launched: LaunchedProcess[] = []
  let running: Stoppable | undefined
  let cleaning: Promise<void> | undefined
  const removeTmp = (): void => {
    if (!keep) rmSync(tmp, { recursive: true, force: true })
  }
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      running?.stop()
      await stopAll(launched, 5000).catch((err: unknown) => console.error(`bench: stopping the cluster: ${(err as Error).message}`))
      removeTmp()
      if (keep) console.log(`kept ${tmp} (data/ and logs/)`)
    })()
    return cleaning
  }
  // Last resort if we exit before cleanup finished (second Ctrl-C): the launcher's own
  // exit hook SIGKILLs the children; the temp dir goes here.
  process.on('exit', removeTmp)
  const abort = new AbortController()
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (abort.signal.aborted) process.exit(130)
      abort.abort()
      console.error(`\nbench: ${sig}: stopping the cluster...`)
      void cleanup().finally(() => process.exit(130))
    })
  }

  try {
    return await bench(opts, { tmp, launched, setRunning: (r) => { running = r }, signal: abort.signal })
  } catch (err) {
    if (abort.signal.aborted) return 130
    console.error(`bench: ${(err as Error).message}`)
    // What the processes said last is usually the explanation.
    for (const p of launched) {
      const tail = p.output().split('\n').slice(-10).join('\n')
      if (tail !== '') console.error(`--- ${p.name} (last lines) ---\n${tail}`)
    }
    return 1
  } finally {
    await cleanup()
  }
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error('bench: unexpected error:', err)
  process.exitCode = 1
})
