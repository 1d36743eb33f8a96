import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from '../src/http/undici'
import { intFlag, parseFlags, UsageError } from '../src/config/cli-flags'
import { startLocalCluster, type LocalCluster } from '../src/local/cluster'
import { launchShard, stopAll, type LaunchedProcess } from '../src/local/launcher'
import { GroupRing } from '../src/ring/ring'
import { kvPath } from '../src/protocol/key'
import { CLUSTER_PATH, HEALTH_PATH } from '../src/protocol/wire'
import type { ClusterView } from '../src/protocol/cluster-view'
import { runScenario, type ScenarioResult, type Stoppable } from './load'
import { describeTimeline, failoverTimeline, medianTimeline, readLogLines, type Timeline } from './failover-timeline'

/**
 * `node dist/bench/failover.js [options]`: what replication costs and what it buys.
 *
 *  1. Failover time. A cluster whose groups have one replica each runs a light write
 *     load; K times, every process of g1's current primary is SIGKILLed (supervisor
 *     and workers, PIDs from its /healthz) and the time from the kill to the first
 *     acknowledged write to a key of g1 (through the router) is measured. The killed
 *     node is restarted on its data dir and port each time and the next round starts
 *     only once it is an in-sync replica again. Prints median / min / max, and where
 *     each failover's time went, read back from the processes' logs (failover-timeline.ts).
 *  2. Write throughput. PUTs through the router with a fixed number of connections
 *     for a fixed time (autocannon), on the replicated cluster and then on a cluster
 *     without replicas started in the same run; prints both and their ratio.
 *
 * Bounded in time (--max-seconds); every process it started is stopped and the temp
 * dir removed however it ends (Ctrl-C included).
 */

const HOST = '127.0.0.1'

const HELP = `Usage: node dist/bench/failover.js [options]

Options:
  --kills N          primary kills (default 3)
  --groups N         shard groups (default 2)
  --duration S       seconds of PUT load per throughput measurement (default 5)
  --connections N    connections for the throughput measurement (default 16)
  --keys N           distinct keys written by the throughput measurement (default 2000)
  --value-bytes N    value size (default 100)
  --workers N        worker processes per shard node (default 1)
  --max-seconds S    give up after this long (default 300)
  --skip-throughput  measure the failovers only
  --keep             keep the temp dir (data, logs)
  --help             show this text`

interface Options { kills: number, groups: number, duration: number, connections: number, keys: number, valueBytes: number, workers: number, maxSeconds: number, keep: boolean, skipThroughput: boolean }


function parseOptions (argv: string[]): Options | 'help' {
  const values: Record<string, string | boolean | undefined> = parseFlags(argv, {
    help: { type: 'boolean' },
    keep: { type: 'boolean' },
    'skip-throughput': { type: 'boolean' },
    kills: { type: 'string' },
    groups: { type: 'string' },
    duration: { type: 'string' },
    connections: { type: 'string' },
    keys: { type: 'string' },
    'value-bytes': { type: 'string' },
    workers: { type: 'string' },
    'max-seconds': { type: 'string' }
  })
  if (values.help === true) return 'help'
  const int = (name: string, fallback: number, min: number, max: number): number => intFlag(name, values[name], fallback, min, max)
  return {
    kills: int('kills', 3, 1, 20),
    groups: int('groups', 2, 1, 8),
    duration: int('duration', 5, 1, 120),
    connections: int('connections', 16, 1, 512),
    keys: int('keys', 2000, 1, 1_000_000),
    valueBytes: int('value-bytes', 100, 0, 1024 * 1024),
    workers: int('workers', 1, 1, 64),
    maxSeconds: int('max-seconds', 300, 30, 3600),
    keep: values.keep === true,
    skipThroughput: values['skip-throughput'] === true
  }
}


/** A shard node this run started, with what it takes to start it again. */
interface Node { name: string, group: string, dataDir: string, port: number, url: string, proc: LaunchedProcess }

const agent = new Agent({ connections: 32, keepAliveTimeout: 4000, pipelining: 1 })
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function getJson<T> (url: string, timeoutMs = 5000): Promise<T> {
  const res = await request(url, { dispatcher: agent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${text.slice(0, 200)}`)
  return JSON.parse(text) as T
}

async function put (base: string, key: string, value: string, timeoutMs = 20_000): Promise<number> {
  const res = await request(base + kvPath(key), { method: 'PUT', body: value, headers: { 'content-type': 'text/plain' }, dispatcher: agent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  await res.body.dump()
  return res.statusCode
}

function group (view: ClusterView, id: string): ClusterView['groups'][number] {
  const g = view.groups.find((x) => x.id === id)
  if (g === undefined) throw new Error(`group ${id} is not in the map`)
  return g
}

async function waitForView (routerUrl: string, pred: (v: ClusterView) => boolean, what: string, signal: AbortSignal, timeoutMs = 60_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs
  let last: ClusterView | undefined
  while (Date.now() < deadline) {
    signal.throwIfAborted()
    try {
      last = await getJson<ClusterView>(routerUrl + CLUSTER_PATH)
      if (pred(last)) return last
    } catch { /* the router may be busy; poll again */ }
    await sleep(100)
  }
  throw new Error(`the cluster did not reach "${what}" within ${timeoutMs} ms; last view: ${JSON.stringify(last?.groups)}`)
}

const allInSync = (v: ClusterView): boolean => v.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))

function ownedKeys (view: ClusterView, groupId: string, n: number, prefix: string): string[] {
  const ring = new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
  const out: string[] = []
  for (let i = 0; out.length < n && i < 1_000_000; i++) if (ring.ownerOf(`${prefix}/${i}`) === groupId) out.push(`${prefix}/${i}`)
  return out
}

/** A few sequential writers over every group, so the kills happen under load. */
function lightLoad (routerUrl: string, writers: number): { stop: () => Promise<{ ok: number, failed: number }> } {
  let stopped = false
  let ok = 0
  let failed = 0
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let i = 0; !stopped; i++) {
      try {
        const status = await put(routerUrl, `light/${w}/${i % 200}`, `w${w}-${i}`)
        if (status === 200 || status === 201) ok++
        else failed++
      } catch {
        failed++
      }
      await sleep(10)
    }
  })
  return { stop: async () => { stopped = true; await Promise.all(loops); return { ok, failed } } }
}

function stats (xs: number[]): { median: number, min: number, max: number } {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
  return { median, min: s[0] as number, max: s[s.length - 1] as number }
}

interface Ctx { tmp: string, launched: LaunchedProcess[], signal: AbortSignal, setRunning: (r: Stoppable | undefined) => void }

/** Where the replicated cluster's processes (restarted nodes included) write their logs: the breakdown reads them. */
const logDirOf = (ctx: Ctx): string => join(ctx.tmp, 'logs', 'replicated')

async function startCluster (opts: Options, ctx: Ctx, name: string, replicas: number): Promise<{ cluster: LocalCluster, nodes: Node[] }> {
  const dataDir = join(ctx.tmp, name)
  const cluster = await startLocalCluster({
    dataDir,
    logDir: join(ctx.tmp, 'logs', name),
    groups: opts.groups,
    replicas,
    host: HOST,
    workers: opts.workers,
    synchronous: 'NORMAL',
    detached: true,
    onLaunched: (p) => ctx.launched.push(p)
  })
  const nodes: Node[] = cluster.shards.flatMap((s) => [s.process, ...s.replicas].map((p) => ({
    name: p.name, group: s.group, dataDir: join(dataDir, p.name), port: Number(new URL(p.url).port), url: p.url, proc: p
  })))
  return { cluster, nodes }
}

async function killNode (node: Node): Promise<number> {
  const h = await getJson<{ pid: number, workerPids: number[] }>(node.url + HEALTH_PATH)
  if (h.pid !== node.proc.pid) throw new Error(`${node.name}: /healthz pid ${h.pid} is not the launched ${node.proc.pid}`)
  const at = Date.now()
  for (const pid of [h.pid, ...h.workerPids]) {
    try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
  }
  await node.proc.exited
  return at
}

async function restartNode (opts: Options, ctx: Ctx, node: Node): Promise<void> {
  let lastErr: unknown
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      node.proc = await launchShard({ name: node.name, group: node.group, dataDir: node.dataDir, port: node.port, host: HOST, workers: opts.workers, synchronous: 'NORMAL', detached: true, logFile: join(logDirOf(ctx), `${node.name}.restart.log`) })
      ctx.launched.push(node.proc)
      return
    } catch (err) {
      lastErr = err
      await sleep(300)
    }
  }
  throw lastErr
}

/** Kill → first acknowledged write to that group, K times, each with its breakdown from the logs. */
async function measureFailovers (opts: Options, ctx: Ctx, routerUrl: string, nodes: Node[]): Promise<{ times: number[], timelines: Timeline[] }> {
  const times: number[] = []
  const timelines: Timeline[] = []
  const load = lightLoad(routerUrl, 4)
  try {
    for (let k = 1; k <= opts.kills; k++) {
      const before = await waitForView(routerUrl, allInSync, 'every replica in sync', ctx.signal)
      const g = group(before, 'g1')
      const primaryUrl = g.nodes.find((n) => n.role === 'primary')?.url
      const victim = nodes.find((n) => n.url === primaryUrl)
      if (victim === undefined) throw new Error(`g1's primary ${String(primaryUrl)} is not a node this run started`)
      const keys = ownedKeys(before, 'g1', 8, `failover-probe-${k}`)
      const killedAt = await killNode(victim)
      let attempts = 0
      let ms: number | undefined
      while (ms === undefined) {
        ctx.signal.throwIfAborted()
        if (Date.now() - killedAt > 60_000) throw new Error(`no write to g1 was acknowledged within 60 s of kill ${k}`)
        const status = await put(routerUrl, keys[attempts % keys.length] as string, `k${k}-${attempts}`).catch(() => 0)
        attempts++
        if (status === 200 || status === 201) ms = Date.now() - killedAt
        else await sleep(10)
      }
      const after = await waitForView(routerUrl, (v) => group(v, 'g1').term > g.term, 'a new term for g1', ctx.signal)
      times.push(ms)
      console.log(`  kill ${k}: ${victim.name} (primary of g1, term ${g.term}) -> first acknowledged write after ${ms} ms (${attempts} attempt${attempts === 1 ? '' : 's'}); g1 now at term ${group(after, 'g1').term}`)
      await restartNode(opts, ctx, victim)
      const t0 = Date.now()
      await waitForView(routerUrl, (v) => group(v, 'g1').nodes.some((n) => n.url === victim.url && n.role === 'replica' && n.inSync === true && n.health === 'up'), `${victim.name} back in sync`, ctx.signal)
      console.log(`          ${victim.name} restarted; an in-sync replica again after ${Date.now() - t0} ms`)
      const timeline = failoverTimeline(readLogLines(logDirOf(ctx)), { group: 'g1', victim: victim.url, killedAt, ackedAt: killedAt + ms })
      timelines.push(timeline)
      console.log(`          ms after the kill: ${describeTimeline(timeline)}`)
    }
  } finally {
    const l = await load.stop()
    console.log(`  light load during the kills: ${l.ok} writes acknowledged, ${l.failed} failed (outcome unknown)`)
  }
  return { times, timelines }
}

async function measurePuts (opts: Options, ctx: Ctx, routerUrl: string, label: string): Promise<ScenarioResult> {
  const paths = Array.from({ length: opts.keys }, (_, i) => kvPath(`tput/${i}`))
  const body = Buffer.alloc(opts.valueBytes, 'v')
  // One unmeasured second first: pools, JIT, first inserts.
  await runScenario({ name: 'warm-up', target: label, url: routerUrl, method: 'PUT', paths, body }, { connections: opts.connections, durationS: 1 }, ctx.setRunning)
  ctx.signal.throwIfAborted()
  const r = await runScenario({ name: `routed PUT (${label})`, target: label, url: routerUrl, method: 'PUT', paths, body }, { connections: opts.connections, durationS: opts.duration }, ctx.setRunning)
  ctx.setRunning(undefined)
  console.log(`  ${label.padEnd(12)} ${Math.round(r.reqPerSec)} PUT/s  p50 ${r.latencyMs.p50.toFixed(1)} ms  p99 ${r.latencyMs.p99.toFixed(1)} ms  (${r.requests} requests, ${r.errors} errors, ${r.non2xx} non-2xx)`)
  return r
}

async function bench (opts: Options, ctx: Ctx): Promise<number> {
  console.log(`shardkv failover bench: node ${process.version}, ${availableParallelism()} cores; ${opts.groups} groups × (primary + 1 replica), ${opts.workers} worker(s) per node`)
  console.log('  coordinator defaults: lease 800 ms renewed every 200 ms, a dead primary replaced just after its lease ends; replica timeout 1000 ms')

  const replicated = await startCluster(opts, ctx, 'replicated', 1)
  const routerUrl = replicated.cluster.router.url
  await waitForView(routerUrl, allInSync, 'every replica in sync', ctx.signal)
  console.log(`  cluster up: router ${routerUrl}`)

  console.log(`\nfailover: ${opts.kills} SIGKILLs of g1's primary under light write load`)
  const { times, timelines } = await measureFailovers(opts, ctx, routerUrl, replicated.nodes)
  const s = stats(times)
  console.log(`  kill -> first acknowledged write: median ${s.median} ms, min ${s.min} ms, max ${s.max} ms  (${times.join(', ')} ms)`)
  console.log(`  median of each step, ms after the kill: ${describeTimeline(medianTimeline(timelines))}`)
  if (opts.skipThroughput) return 0

  console.log(`\nwrite throughput: routed PUTs, ${opts.connections} connections, ${opts.duration} s, ${opts.keys} keys of ${opts.valueBytes} bytes`)
  await waitForView(routerUrl, allInSync, 'every replica in sync', ctx.signal)
  const withReplica = await measurePuts(opts, ctx, routerUrl, 'replicas=1')
  // Everything started so far (restarted nodes included), before the cluster without replicas starts.
  await stopAll(ctx.launched, 5000)

  const plain = await startCluster(opts, ctx, 'plain', 0)
  const withoutReplica = await measurePuts(opts, ctx, plain.cluster.router.url, 'replicas=0')
  await plain.cluster.stop(5000)

  const ratio = withoutReplica.reqPerSec > 0 ? withReplica.reqPerSec / withoutReplica.reqPerSec : Number.NaN
  console.log(`  ratio replicas=1 / replicas=0: ${ratio.toFixed(2)} (p50 latency ${withReplica.latencyMs.p50.toFixed(1)} ms vs ${withoutReplica.latencyMs.p50.toFixed(1)} ms)`)
  const bad = [withReplica, withoutReplica].filter((r) => r.errors > 0 || r.non2xx > 0)
  for (const r of bad) console.error(`warning: ${r.name}: ${r.errors} errors, ${r.non2xx} non-2xx (${JSON.stringify(r.statusCodes)})`)
  return bad.length === 0 ? 0 : 1
}

async function main (): Promise<number> {
  let opts: Options | 'help'
  try {
    opts = parseOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`bench/failover: ${err.message}\n(see --help)`)
    return 2
  }
  if (opts === 'help') {
    console.log(HELP)
    return 0
  }
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-bench-failover-'))
  const launched: LaunchedProcess[] = []
  let running: Stoppable | undefined
  const abort = new AbortController()
  const keep = opts.keep
  const removeTmp = (): void => { if (!keep) rmSync(tmp, { recursive: true, force: true }) }
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      running?.stop()
      await stopAll(launched, 5000).catch((err: unknown) => console.error(`bench/failover: stopping processes: ${(err as Error).message}`))
      await agent.close().catch(() => undefined)
      removeTmp()
      if (keep) console.log(`kept ${tmp}`)
    })()
    return cleaning
  }
  process.on('exit', removeTmp)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (abort.signal.aborted) process.exit(130)
      abort.abort(new Error(sig))
      console.error(`\nbench/failover: ${sig}: stopping...`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  const limit = setTimeout(() => {
    console.error(`bench/failover: giving up after ${opts.maxSeconds} s`)
    abort.abort(new Error('time limit'))
    running?.stop()
  }, opts.maxSeconds * 1000)
  limit.unref()
  try {
    return await bench(opts, { tmp, launched, signal: abort.signal, setRunning: (r) => { running = r } })
  } catch (err) {
    console.error(`bench/failover: ${(err as Error).message}`)
    for (const p of launched) {
      const tail = p.output().split('\n').slice(-8).join('\n')
      if (tail !== '') console.error(`--- ${p.name} (pid ${p.pid}) ---\n${tail}`)
    }
    return 1
  } finally {
    clearTimeout(limit)
    await cleanup()
  }
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error('bench/failover: unexpected error:', err)
  process.exitCode = 1
})
