import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { launchShard, type LaunchedProcess } from '../../src/local/launcher'
import type { ShardHealth } from '../../src/protocol/node-answers'
import { HttpClient } from './http'
import type { TcpProxy } from './tcp-proxy'

/**
 * Shard node processes for tests: the sandbox (a temp dir plus every process launched in
 * it, stopped by PID at teardown), launching a node in it, and the process control a test
 * cluster offers over its nodes (health, PIDs from the node's own /healthz, SIGKILL,
 * SIGSTOP/SIGCONT, restart on the same data dir and port).
 */

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Polls `probe` (every 25 ms) until it gives a value other than undefined or false, and
 * returns it; throws after timeoutMs, saying `what` was awaited (a function: evaluated then).
 */
export async function waitFor<T> (probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string | (() => string)): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${typeof what === 'string' ? what : what()}`)
    await sleep(25)
  }
}

/** True while the PID names a live (non-zombie) process. */
export function isAlive (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 3 (after the parenthesised command) is the state; Z = zombie, X = dead.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
}

/** A PID is ours when its command line names our temp dir (cluster workers inherit the primary's argv). */
function isOurs (pid: number, tmp: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(tmp)
  } catch {
    return false
  }
}

export async function waitUntilDead (pids: readonly number[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (pids.some(isAlive)) {
    if (Date.now() > deadline) throw new Error(`processes still alive after ${timeoutMs} ms: ${pids.filter(isAlive).join(', ')}`)
    await sleep(25)
  }
}

/** A temp dir plus every process launched in it, cleaned up by one tap teardown. */
export interface Sandbox {
  tmp: string
  http: HttpClient
  launched: LaunchedProcess[]
  /** Worker PIDs seen in /healthz answers: killed at teardown if still alive and ours. */
  seenWorkerPids: Set<number>
}

/** `headers`: what the sandbox's HTTP client sends on every request (a bearer token once client auth is on). */
export function sandbox (t: Test, name: string, headers?: () => Record<string, string>): Sandbox {
  const tmp = mkdtempSync(join(tmpdir(), `shardkv-${name}-`))
  const box: Sandbox = { tmp, http: new HttpClient({ connections: 64, headers }), launched: [], seenWorkerPids: new Set() }
  t.teardown(async () => {
    const routers = box.launched.filter((p) => p.role === 'router')
    const coordinators = box.launched.filter((p) => p.role === 'coordinator')
    const shards = box.launched.filter((p) => p.role === 'shard')
    await Promise.allSettled(routers.map(async (p) => await p.stop(5000)))
    await Promise.allSettled(coordinators.map(async (p) => await p.stop(5000)))
    await Promise.allSettled(shards.map(async (p) => await p.stop(8000)))
    // Workers of a SIGKILLed primary normally exit with it; make sure, by PID.
    const leftovers = [...box.seenWorkerPids].filter((pid) => isAlive(pid) && isOurs(pid, tmp))
    for (const pid of leftovers) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await waitUntilDead(leftovers, 5000).catch(() => undefined)
    await box.http.close().catch(() => undefined)
    rmSync(tmp, { recursive: true, force: true })
  })
  return box
}

export interface ShardStartOptions {
  group: string
  nodeId: string
  dataDir: string
  port: number
  workers?: number
  synchronous?: string
  env?: NodeJS.ProcessEnv
  extraArgs?: string[]
}

/** Launches a shard node inside a sandbox (so the sandbox's teardown stops it). */
export async function startShardIn (box: Sandbox, o: ShardStartOptions): Promise<LaunchedProcess> {
  const p = await launchShard({
    name: o.group,
    dataDir: o.dataDir,
    port: o.port,
    workers: o.workers ?? 2,
    nodeId: o.nodeId,
    group: o.group,
    synchronous: o.synchronous ?? 'NORMAL',
    env: { SHARDKV_LOG_LEVEL: 'info', ...o.env },
    extraArgs: o.extraArgs,
    readyTimeoutMs: 60_000
  })
  box.launched.push(p)
  return p
}

export async function shardHealth (box: Sandbox, url: string): Promise<ShardHealth> {
  const h = await box.http.getJson<ShardHealth>(`${url}/healthz`)
  for (const pid of h.workerPids ?? []) box.seenWorkerPids.add(pid)
  return h
}

/** One shard node of a test cluster (a group's primary or a replica); `url` and `port` stay the same across restarts. */
export interface ClusterNode {
  /** `g1` for a group's first node, `g1-r1` for its first replica; also its data dir's name. */
  name: string
  group: string
  nodeId: string
  dataDir: string
  /** The port the node itself listens on (fixed after the first start, so a restart comes back where the map expects it). */
  port: number
  /** The node's url in the cluster map: its proxy's when it has one, else its own. */
  url: string
  /** Where the node itself listens (bypassing any proxy). */
  realUrl: string
  /** Present for nodes the map reaches through a TcpProxy (to cut them off). */
  proxy?: TcpProxy
  proc: LaunchedProcess
}

/** Starts a shard node on its data dir and port (0: one the OS chooses). */
export type LaunchNode = (node: Pick<ClusterNode, 'group' | 'nodeId' | 'dataDir' | 'port'>) => Promise<LaunchedProcess>

export interface NodeControl {
  /** GET /healthz straight at the node (not through its proxy: a partitioned node still answers here). */
  health: (node: ClusterNode) => Promise<ShardHealth>
  /** Polls /healthz (every 100 ms) until the predicate holds; throws with the last answer after timeoutMs. */
  waitForHealth: (node: ClusterNode, pred: (h: ShardHealth) => boolean, timeoutMs?: number) => Promise<ShardHealth>
  /** Supervisor PID and worker PIDs, from the node's own /healthz (checked against the launched PID). */
  pidsOf: (node: ClusterNode) => Promise<number[]>
  /** SIGKILL the supervisor and every worker at once; resolves when all are gone; `at` is when the signals were sent. */
  killHard: (node: ClusterNode) => Promise<{ pids: number[], at: number }>
  /** Like killHard, with PIDs read before (pidsOf): the signals go out synchronously, at the call. */
  killPids: (node: ClusterNode, pids: readonly number[]) => Promise<{ pids: number[], at: number }>
  /** SIGSTOP the supervisor and every worker; returns the PIDs (continued at teardown at the latest). */
  freeze: (node: ClusterNode) => Promise<{ pids: number[], at: number }>
  /** SIGCONT PIDs frozen before. */
  thaw: (pids: readonly number[]) => void
  /** Starts the node again on its data dir and port. */
  restart: (node: ClusterNode) => Promise<void>
  /** SIGCONT every PID still frozen (the cluster's teardown calls it before the processes are stopped). */
  thawAll: () => void
}

/** Process control over the nodes of one sandbox. */
export function nodeControl (box: Sandbox, launch: LaunchNode): NodeControl {
  const frozen = new Set<number>()
  const health = async (node: ClusterNode): Promise<ShardHealth> => await shardHealth(box, node.realUrl)
  const pidsOf = async (node: ClusterNode): Promise<number[]> => {
    const h = await health(node)
    if (h.pid !== node.proc.pid) throw new Error(`${node.name}: /healthz pid ${h.pid} is not the launched supervisor ${node.proc.pid}`)
    if (!Array.isArray(h.workerPids) || h.workerPids.length === 0) throw new Error(`${node.name}: /healthz lists no worker pids`)
    return [h.pid, ...h.workerPids]
  }
  const killPids = async (node: ClusterNode, pids: readonly number[]): Promise<{ pids: number[], at: number }> => {
    const at = Date.now()
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await node.proc.exited
    await waitUntilDead(pids)
    return { pids: [...pids], at }
  }
  const thaw = (pids: readonly number[]): void => {
    for (const pid of pids) {
      frozen.delete(pid)
      if (isAlive(pid)) {
        try { process.kill(pid, 'SIGCONT') } catch { /* gone */ }
      }
    }
  }
  return {
    health,
    waitForHealth: async (node, pred, timeoutMs = 20_000) => await waitForHealth(health, node, pred, timeoutMs),
    pidsOf,
    killPids,
    killHard: async (node) => await killPids(node, await pidsOf(node)),
    freeze: async (node) => {
      const pids = await pidsOf(node)
      for (const pid of pids) frozen.add(pid)
      const at = Date.now()
      for (const pid of pids) process.kill(pid, 'SIGSTOP')
      return { pids, at }
    },
    thaw,
    restart: async (node) => { await restartNode(node, launch, health) },
    thawAll: () => { thaw([...frozen]) }
  }
}

async function waitForHealth (health: (node: ClusterNode) => Promise<ShardHealth>, node: ClusterNode, pred: (h: ShardHealth) => boolean, timeoutMs: number): Promise<ShardHealth> {
  const deadline = Date.now() + timeoutMs
  let last: ShardHealth | undefined
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      last = await health(node)
      if (pred(last)) return last
    } catch (err) {
      lastErr = err
    }
    await sleep(100)
  }
  throw new Error(`${node.name}: /healthz did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)} ${lastErr === undefined ? '' : String(lastErr)}`)
}

async function restartNode (node: ClusterNode, launch: LaunchNode, health: (node: ClusterNode) => Promise<ShardHealth>): Promise<void> {
  // The old listening socket is gone with its processes, but the kernel may not have
  // released the port yet: retry briefly.
  let lastErr: unknown
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      node.proc = await launch(node)
      node.realUrl = node.proc.url
      if (node.proxy === undefined) node.url = node.proc.url
      await health(node)
      return
    } catch (err) {
      lastErr = err
      await sleep(300)
    }
  }
  throw lastErr
}
