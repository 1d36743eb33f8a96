import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { request } from '../src/http/undici'
import { startLocalCluster, type LocalCluster } from '../src/local/cluster'
import { launchShard, type LaunchedProcess } from '../src/local/launcher'
import { QUICK_START_SHAPE } from '../src/local/quick-start'
import { AdminClient } from '../src/client/admin'
import { kvPath } from '../src/protocol/key'
import { ringOf, validateMap } from '../src/membership/map'
import { runScenario, type Scenario, type ScenarioResult, type Stoppable } from './load'
import { cpuSeconds } from './proc-cpu'
import type { RebalanceProgress } from '../src/membership/rebalance'
import { preload, benchKey } from './preload'

/**
 * `npm run bench:ops`: what operating the cluster costs, measured on real processes.
 *  1. rebalance: rows/s moved while adding a 4th group, and client GET throughput and
 *     p99 during the rebalance versus before it (same load, one run);
 *  2. failover: time from SIGKILL of a primary to the first successful write to its
 *     group, median of several kills;
 *  3. replication: PUT throughput with one replica per group versus none;
 *  4. switchover: time of a planned switchover (fence to published map) and the PUT
 *     load's p99, max and errors across several switchovers, versus the same load without;
 *  5. rolling: the slowest PUT while every node of a quick-start-shaped cluster (npm start's
 *     groups of primary + replica) with workers replaces them one at a time on SIGUSR2, against
 *     the p99 of the same load without restarts (issue 10: at most p99 + 500 ms).
 */

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function put (url: string, key: string, body: string): Promise<number> {
  const res = await request(url + kvPath(key), { method: 'PUT', body, headersTimeout: 15_000 })
  await res.body.dump()
  return res.statusCode
}

interface RebalanceRun { keys: number, seconds: number, lean: boolean, idle: boolean, profileDir?: string, logDir?: string }

/**
 * The rebalance line measures the shape `npm start` runs (groups of primary + replica, nodes in one process) unless --lean.
 * The "during" load runs exactly while the rebalance does (started with it, stopped when it is done, at least
 * one second), so a fast rebalance is not averaged with the quiet time after it; `idle` runs no load at all
 * (the rebalance alone: its rows/s and CPU without clients). The server CPU is every cluster process's, over the
 * rebalance: on a shared machine it varies less than the wall time. With `profileDir`, every process writes a
 * V8 CPU profile there (summarise one with bench/profile-summary.ts); with `logDir`, its log.
 */
async function rebalanceBench (dir: string, run: RebalanceRun): Promise<Record<string, unknown>> {
  const replicas = run.lean ? 0 : 1
  const nodeArgs = run.profileDir === undefined ? undefined : ['--cpu-prof', `--cpu-prof-dir=${run.profileDir}`]
  const cluster = await startLocalCluster({ dataDir: join(dir, 'rb'), groups: QUICK_START_SHAPE.groups, replicas, nodeArgs, logDir: run.logDir })
  const extra: LaunchedProcess[] = []
  try {
    if (replicas > 0) await waitInSync(new AdminClient(cluster.router.url))
    const paths = Array.from({ length: run.keys }, (_, i) => benchKey(i))
    await preload(cluster.router.url, paths, Buffer.alloc(100, 'x'))
    const scenario = { name: 'GET', target: 'router', url: cluster.router.url, method: 'GET' as const, paths: paths.map(kvPath) }
    const before = run.idle ? undefined : await runScenario({ ...scenario, name: 'GET before' }, { connections: 16, durationS: run.seconds })
    const added = `g${QUICK_START_SHAPE.groups + 1}`
    const nodes = await Promise.all([added, ...Array.from({ length: replicas }, (_, j) => `${added}-r${j + 1}`)].map(async (name) =>
      await launchShard({ name, dataDir: join(dir, 'rb', name), nodeArgs, logFile: run.logDir === undefined ? undefined : join(run.logDir, `${name}.log`) })))
    extra.push(...nodes)
    const processes = [...cluster.processes(), ...nodes]
    const cpuOf = (): number[] => processes.map((p) => cpuSeconds([p.pid]) ?? NaN)
    const cpuBefore = cpuOf()
    const { done, during, movedMs } = await addGroupUnder(cluster.router.url, added, nodes, run.idle ? undefined : scenario)
    const cpu = cpuOf().map((c, i) => c - (cpuBefore[i] as number))
    if (run.profileDir !== undefined) {
      process.stdout.write(`profiles in ${run.profileDir}: ${processes.map((p) => `${p.name}=${p.pid}`).join(' ')}\n`)
    }
    return {
      shape: `${run.lean ? 'lean: no replicas' : 'quick start: primary + replica per group'}${run.idle ? ', no client load' : ''}`,
      keys: run.keys,
      copied: done.copied,
      scanned: done.scanned,
      rebalanceSeconds: movedMs / 1000,
      // From the coordinator's own start and finish times, not from when we looked.
      rowsScannedPerSecond: done.keysPerSecond,
      rowsCopiedPerSecond: Math.round(done.copied / (movedMs / 1000)),
      serverCpuSeconds: round(cpu.reduce((a, b) => a + b, 0)),
      serverCpuByProcess: Object.fromEntries(processes.map((p, i) => [p.name, round(cpu[i] as number)])),
      ...(before === undefined || during === undefined
        ? {}
        : { getBefore: summary(before), getDuring: summary(during), p99DuringOverBefore: round(during.latencyMs.p99 / before.latencyMs.p99), throughputDuringOverBefore: round(during.reqPerSec / before.reqPerSec) })
    }
  } finally {
    await Promise.all(extra.map(async (p) => await p.stop()))
    await cluster.stop()
  }
}

/** Adds group `id` (its primary and replicas) and waits for its rebalance, with `scenario` running exactly meanwhile (at least a second) when given. */
async function addGroupUnder (routerUrl: string, id: string, nodes: LaunchedProcess[], scenario: Scenario | undefined): Promise<{ done: RebalanceProgress, during?: ScenarioResult, movedMs: number }> {
  const admin = new AdminClient(routerUrl)
  let running: Stoppable | undefined
  const load = scenario === undefined ? undefined : runScenario({ ...scenario, name: 'GET during' }, { connections: 16, durationS: 120 }, (r) => { running = r })
  const startedAt = Date.now()
  let done: RebalanceProgress
  try {
    await admin.addGroup(id, nodes[0]!.url, 1, nodes.slice(1).map((n) => n.url))
    done = await admin.waitForRebalance(() => undefined, 50)
    if (load !== undefined) await sleep(Math.max(0, startedAt + 1000 - Date.now()))
  } finally {
    running?.stop()
  }
  const during = await load
  return { done, during, movedMs: Date.parse(done.finishedAt ?? new Date().toISOString()) - startedAt }
}

async function failoverBench (dir: string, kills: number): Promise<Record<string, unknown>> {
  const cluster = await startLocalCluster({ dataDir: join(dir, 'fo'), groups: 1, replicas: 1 })
  const restarted: LaunchedProcess[] = []
  const times: number[] = []
  try {
    const admin = new AdminClient(cluster.router.url)
    const inSync = async (): Promise<void> => {
      for (;;) {
        const v = await admin.cluster()
        if (v.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))) return
        await sleep(100)
      }
    }
    await inSync()
    const nodes = [cluster.shards[0]!.process, ...cluster.shards[0]!.replicas]
    for (let k = 0; k < kills; k++) {
      const view = await admin.cluster()
      const primaryUrl = view.groups[0]!.nodes.find((n) => n.role === 'primary')!.url
      const h = await (await request(primaryUrl + '/healthz')).body.json() as { pid: number, workerPids: number[] }
      const t0 = Date.now()
      // A node serving in its own process lists itself among its workerPids: one kill each.
      for (const pid of new Set([h.pid, ...h.workerPids])) process.kill(pid, 'SIGKILL')
      for (let i = 0; ; i++) {
        const status = await put(cluster.router.url, `failover-probe-${k}`, `v${i}`).catch(() => 0)
        if (status > 0 && status < 300) break
        if (Date.now() - t0 > 30_000) throw new Error('no write succeeded within 30 s of the kill')
      }
      times.push(Date.now() - t0)
      // Bring the killed node back on its data dir and port; it rejoins as a replica.
      const dead = nodes.find((n) => n.url === primaryUrl)!
      const port = Number(new URL(dead.url).port)
      const again = await launchShard({ dataDir: join(dir, 'fo', dead.name), port })
      restarted.push(again)
      await inSync()
    }
    const sorted = [...times].sort((a, b) => a - b)
    return { kills, msFromKillToFirstWrite: times, median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1] }
  } finally {
    await Promise.all(restarted.map(async (p) => await p.stop()))
    await cluster.stop()
  }
}

async function waitInSync (admin: AdminClient): Promise<void> {
  while (!(await admin.cluster()).groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))) await sleep(50)
}

async function switchoverBench (dir: string, rounds: number, seconds: number): Promise<Record<string, unknown>> {
  const cluster = await startLocalCluster({ dataDir: join(dir, 'so'), groups: 1, replicas: 1 })
  try {
    const admin = new AdminClient(cluster.router.url)
    await waitInSync(admin)
    const paths = Array.from({ length: 2000 }, (_, i) => benchKey(i)).map(kvPath)
    const scenario = { name: 'PUT', target: 'router', url: cluster.router.url, method: 'PUT' as const, paths, body: Buffer.alloc(100, 'z') }
    const before = await runScenario({ ...scenario, name: 'PUT without switchover' }, { connections: 16, durationS: seconds })
    const load = runScenario({ ...scenario, name: 'PUT across switchovers' }, { connections: 16, durationS: seconds })
    const tookMs: number[] = []
    const callMs: number[] = []
    // Spread over the measured load; each starts once the previous old primary is in sync again.
    for (let i = 0; i < rounds; i++) {
      await sleep((seconds * 1000) / (rounds + 1) / 2)
      const t0 = Date.now()
      const done = await admin.switchover('g1')
      callMs.push(Date.now() - t0)
      tookMs.push(done.tookMs)
      await waitInSync(admin)
    }
    const during = await load
    const sorted = [...tookMs].sort((a, b) => a - b)
    return { rounds, tookMs, adminCallMs: callMs, medianTookMs: sorted[Math.floor(sorted.length / 2)], putWithout: { ...summary(before), maxMs: round(before.latencyMs.max) }, putAcross: { ...summary(during), maxMs: round(during.latencyMs.max) } }
  } finally {
    await cluster.stop()
  }
}

/** Workers per node for the rolling line: a node serving in one process has none to replace. */
const ROLLING_WORKERS = 2
/** Issue 10: no request during a rolling restart may take longer than this beyond the run's p99. */
const ROLLING_BUDGET_MS = 500

async function rollingBench (dir: string, seconds: number): Promise<Record<string, unknown>> {
  const cluster = await startLocalCluster({ dataDir: join(dir, 'rr'), groups: QUICK_START_SHAPE.groups, replicas: 1, workers: ROLLING_WORKERS })
  try {
    await waitInSync(new AdminClient(cluster.router.url))
    const paths = Array.from({ length: 2000 }, (_, i) => benchKey(i)).map(kvPath)
    const scenario = { name: 'PUT', target: 'router', url: cluster.router.url, method: 'PUT' as const, paths, body: Buffer.alloc(100, 'r') }
    const before = await runScenario({ ...scenario, name: 'PUT without restarts' }, { connections: 16, durationS: seconds })
    // The load runs until every node has restarted (bounded by its duration), one node at a time as a deploy would.
    let running: Stoppable | undefined
    const load = runScenario({ ...scenario, name: 'PUT across rolling restarts' }, { connections: 16, durationS: 120 }, (r) => { running = r })
    const loadStart = Date.now()
    const nodes = cluster.shards.flatMap((s) => [s.process, ...s.replicas])
    const restartMs: number[] = []
    // When each node's restart ran, from the load's start: where the slowest request falls among them.
    const timeline: Array<{ node: string, fromMs: number, toMs: number }> = []
    try {
      await sleep(1000)
      for (const node of nodes) {
        const complete = node.waitForEvent('rolling-restart-complete', 60_000)
        const t0 = Date.now()
        node.signal('SIGUSR2')
        await complete
        restartMs.push(Date.now() - t0)
        timeline.push({ node: node.name, fromMs: t0 - loadStart, toMs: Date.now() - loadStart })
      }
      await sleep(1000)
    } finally {
      running?.stop()
    }
    const during = await load
    const overP99 = during.latencyMs.max - during.latencyMs.p99
    return {
      nodes: nodes.length,
      workersPerNode: ROLLING_WORKERS,
      restartMs,
      timeline,
      slowestPut: during.slowest === undefined ? undefined : { sentAtMs: during.slowest.sentAt - loadStart, ms: round(during.slowest.ms) },
      putWithout: { ...summary(before), maxMs: round(before.latencyMs.max) },
      putAcross: { ...summary(during), maxMs: round(during.latencyMs.max) },
      slowestOverP99Ms: round(overP99),
      verdict: overP99 <= ROLLING_BUDGET_MS && during.errors + during.timeouts + during.non2xx === 0 ? 'PASS' : 'MISS'
    }
  } finally {
    await cluster.stop()
  }
}

async function replicationBench (dir: string, seconds: number, connections: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  const rates: number[] = []
  for (const replicas of [0, 1]) {
    const cluster: LocalCluster = await startLocalCluster({ dataDir: join(dir, `rep${replicas}`), groups: 2, replicas })
    try {
      if (replicas > 0) {
        const admin = new AdminClient(cluster.router.url)
        while (!(await admin.cluster()).groups.every((g) => g.nodes.every((n) => n.role === 'primary' || n.inSync === true))) await sleep(100)
      }
      const map = validateMap(await (await request(cluster.router.url + '/cluster')).body.json())
      const ring = ringOf(map)
      const paths = Array.from({ length: 5000 }, (_, i) => benchKey(i)).filter((k) => ring.ownerOf(k) !== undefined).map(kvPath)
      const r = await runScenario({ name: `PUT replicas=${replicas}`, target: 'router', url: cluster.router.url, method: 'PUT', paths, body: Buffer.alloc(100, 'y') }, { connections, durationS: seconds })
      out[`putReplicas${replicas}`] = summary(r)
      rates.push(r.reqPerSec)
    } finally {
      await cluster.stop()
    }
  }
  out.connections = connections
  out.withOneReplicaOverNone = round((rates[1] ?? 0) / (rates[0] ?? 1))
  return out
}

function summary (r: ScenarioResult): Record<string, number> {
  return { reqPerSec: Math.round(r.reqPerSec), p50Ms: round(r.latencyMs.p50), p99Ms: round(r.latencyMs.p99), errors: r.errors + r.timeouts, non2xx: r.non2xx }
}

function round (n: number): number {
  return Math.round(n * 100) / 100
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { keys: { type: 'string', default: '20000' }, seconds: { type: 'string', default: '5' }, kills: { type: 'string', default: '3' }, switchovers: { type: 'string', default: '4' }, only: { type: 'string' }, lean: { type: 'boolean', default: false }, idle: { type: 'boolean', default: false }, 'cpu-prof': { type: 'string' }, 'log-dir': { type: 'string' }, connections: { type: 'string', default: '16' }, help: { type: 'boolean', default: false } } })
  if (values.help) {
    process.stdout.write('Usage: npm run bench:ops -- [--keys 20000] [--seconds 5] [--kills 3] [--switchovers 4] [--only rebalance|failover|replication|switchover|rolling] [--lean: rebalance without replicas] [--idle: rebalance without client load] [--cpu-prof DIR: the rebalance line writes a CPU profile of every process to DIR] [--log-dir DIR: and its log] [--connections 16: the replication line: PUT connections]\n')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-bench-ops-'))
  const results: Record<string, unknown> = { node: process.version, cores: availableParallelism() }
  try {
    const runs: Record<string, () => Promise<Record<string, unknown>>> = {
      rebalance: async () => await rebalanceBench(dir, { keys: Number(values.keys), seconds: Number(values.seconds), lean: values.lean === true, idle: values.idle === true, profileDir: values['cpu-prof'], logDir: values['log-dir'] ?? values['cpu-prof'] }),
      failover: async () => await failoverBench(dir, Number(values.kills)),
      replication: async () => await replicationBench(dir, Number(values.seconds), Number(values.connections)),
      switchover: async () => await switchoverBench(dir, Number(values.switchovers), Number(values.seconds)),
      rolling: async () => await rollingBench(dir, Number(values.seconds))
    }
    for (const [name, run] of Object.entries(runs)) {
      if (values.only !== undefined && values.only !== name) continue
      results[name] = await run()
      process.stdout.write(`${name}: ${JSON.stringify(results[name])}\n`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:ops: ${err.message}\n`)
  process.exit(1)
})
