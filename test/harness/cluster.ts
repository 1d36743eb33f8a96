import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { ShardHealth } from '../../src/protocol/node-answers'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { launchControlPlane, launchCoordinator, launchRouter, launchShard, type LaunchedProcess } from '../../src/local/launcher'
import { startEtcd, type EtcdCluster } from './etcd'
import { HttpClient } from './http'
import { COORDINATOR_OPTIONS, ROUTER_OPTIONS, splitFlags } from '../../src/config/options'

/**
 * Real clusters for integration tests: N single-node shard groups, a coordinator and a router, on
 * 127.0.0.1 with OS-chosen ports, in a fresh temp dir. The teardown is registered
 * before anything starts, so it runs even when a start or an assertion fails: it
 * stops every process it launched by PID (SIGTERM, then SIGKILL), kills any worker
 * PID it ever saw that is still alive and provably ours, and removes the temp dir.
 */

export interface ClusterOptions {
  shards?: number
  /** Replica nodes per group (default 0). */
  replicas?: number
  workers?: number
  /** Extra flags for every shard node / the control plane (split between the coordinator and the router by which knows each). */
  shardArgs?: string[]
  routerArgs?: string[]
  env?: NodeJS.ProcessEnv
  /** SQLite synchronous level for shard nodes (default NORMAL: fast, still crash-safe for processes). */
  synchronous?: string
  /** Temp dir prefix. */
  name?: string
  /**
   * Called with the cluster's temp dir before anything starts: writes files the processes
   * need (a tokens file, a cluster secret, certificates) there and returns the flags
   * naming them, added to shardArgs / routerArgs. The teardown removes the dir with them.
   */
  prepare?: (tmp: string) => { shardArgs?: string[], routerArgs?: string[] }
  /**
   * The map in a real etcd cluster of this many members (started for the test): the
   * coordinators campaign there and the routers follow the map there. Absent: the file
   * registry, one coordinator, routers following it.
   */
  etcdMembers?: number
  /** With etcd: how many coordinators campaign (default 2) and how many routers run (default 2). */
  coordinators?: number
  routers?: number
}

export type { ShardHealth }

export interface ShardHandle {
  group: string
  nodeId: string
  dataDir: string
  /** Fixed after the first start, so a restart comes back where the router expects it. */
  port: number
  url: string
  proc: LaunchedProcess
}

export interface TestCluster {
  tmp: string
  http: HttpClient
  router: LaunchedProcess
  routerUrl: string
  coordinator: LaunchedProcess
  /** Where the coordinator keeps the map (the file registry). */
  coordinatorDir: string
  /** Every coordinator and router started at the beginning (one each with the file registry). */
  coordinators: LaunchedProcess[]
  routers: LaunchedProcess[]
  /** With `etcdMembers`: the etcd cluster, and the flags that point a process at it. */
  etcd?: EtcdCluster
  registryArgs: string[]
  shards: ShardHandle[]
  /** Every group's replicas (`group` names theirs), in group order. */
  replicas: ShardHandle[]
  /** Every process this cluster launched (restarts included). */
  launched: LaunchedProcess[]
  health: (shard: ShardHandle) => Promise<ShardHealth>
  /** SIGKILL the node's primary and all its workers at once; resolves when all are gone. */
  killShardHard: (shard: ShardHandle) => Promise<number[]>
  /** Start the node again on its data dir and port. */
  restartShard: (shard: ShardHandle) => Promise<void>
  /** Every PID of every live node and the router. */
  pids: () => Promise<Map<string, number[]>>
  /** Poll /healthz until the predicate holds (or throw after timeoutMs). */
  waitForHealth: (shard: ShardHandle, pred: (h: ShardHealth) => boolean, timeoutMs?: number) => Promise<ShardHealth>
}

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
export function sandbox (t: tap.Test, name: string, headers?: () => Record<string, string>): Sandbox {
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

export async function startCluster (t: tap.Test, opts: ClusterOptions = {}): Promise<TestCluster> {
  const n = opts.shards ?? 3
  // Before the sandbox, so that its teardown (tap runs them last-in first-out) stops etcd after every process.
  const etcd = opts.etcdMembers === undefined ? undefined : await startEtcd(t, { members: opts.etcdMembers, name: opts.name ?? 'it' })
  const box = sandbox(t, opts.name ?? 'it')
  const { tmp, http, launched } = box
  const prepared = opts.prepare?.(tmp) ?? {}
  const shardArgs = [...(opts.shardArgs ?? []), ...(prepared.shardArgs ?? [])]
  const routerArgs = [...(opts.routerArgs ?? []), ...(prepared.routerArgs ?? [])]

  const health = async (shard: ShardHandle): Promise<ShardHealth> => await shardHealth(box, shard.url)

  const startShard = async (shard: Omit<ShardHandle, 'proc' | 'url'>): Promise<LaunchedProcess> => await startShardIn(box, {
    group: shard.group,
    nodeId: shard.nodeId,
    dataDir: shard.dataDir,
    port: shard.port,
    workers: opts.workers,
    synchronous: opts.synchronous,
    env: opts.env,
    extraArgs: shardArgs
  })

  const startNode = async (group: string, nodeId: string, dir: string): Promise<ShardHandle> => {
    const base = { group, nodeId, dataDir: join(tmp, dir), port: 0 }
    const proc = await startShard(base)
    return { ...base, port: Number(new URL(proc.url).port), url: proc.url, proc }
  }
  const members = await Promise.all(Array.from({ length: n }, async (_, i) => await Promise.all([
    startNode(`g${i + 1}`, `n${i + 1}`, `g${i + 1}`),
    ...Array.from({ length: opts.replicas ?? 0 }, async (_, j) => await startNode(`g${i + 1}`, `n${i + 1}-r${j + 1}`, `g${i + 1}-r${j + 1}`))
  ])))
  const shards = members.map((m) => m[0] as ShardHandle)
  const replicas = members.flatMap((m) => m.slice(1))
  for (const s of [...shards, ...replicas]) await health(s)

  const coordinatorDir = join(tmp, 'coordinator')
  const groups = members.map((m) => `${(m[0] as ShardHandle).group}=${m.map((x) => x.url).join('+')}`)
  const plane = etcd === undefined
    ? await startFilePlane(box, { dataDir: coordinatorDir, groups, env: opts.env, extraArgs: routerArgs })
    : await startEtcdPlane(box, etcd, { coordinators: opts.coordinators ?? 2, routers: opts.routers ?? 2, groups, env: opts.env, extraArgs: routerArgs })
  const coordinator = plane.coordinators[0] as LaunchedProcess
  const router = plane.routers[0] as LaunchedProcess

  const killShardHard = async (shard: ShardHandle): Promise<number[]> => {
    const h = await health(shard)
    const pids = [h.pid, ...h.workerPids]
    if (h.pid !== shard.proc.pid) throw new Error(`/healthz pid ${h.pid} is not the launched primary ${shard.proc.pid}`)
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await shard.proc.exited
    await waitUntilDead(pids)
    return pids
  }

  const restartShard = async (shard: ShardHandle): Promise<void> => {
    // The old listening socket is gone with its processes; retry briefly in case the
    // kernel has not released the port yet.
    let lastErr: unknown
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        shard.proc = await startShard(shard)
        shard.url = shard.proc.url
        await health(shard)
        return
      } catch (err) {
        lastErr = err
        await sleep(300)
      }
    }
    throw lastErr
  }

  const pids = async (): Promise<Map<string, number[]>> => {
    const out = new Map<string, number[]>()
    out.set('router', [router.pid])
    out.set('coordinator', [coordinator.pid])
    for (const s of shards) {
      const h = await health(s)
      out.set(s.group, [h.pid, ...[...h.workerPids].sort((a, b) => a - b)])
    }
    return out
  }

  const waitForHealth = async (shard: ShardHandle, pred: (h: ShardHealth) => boolean, timeoutMs = 20_000): Promise<ShardHealth> => {
    const deadline = Date.now() + timeoutMs
    let last: ShardHealth | undefined
    let lastErr: unknown
    while (Date.now() < deadline) {
      try {
        last = await health(shard)
        if (pred(last)) return last
      } catch (err) {
        lastErr = err
      }
      await sleep(100)
    }
    throw new Error(`${shard.group}: /healthz did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)} ${lastErr === undefined ? '' : String(lastErr)}`)
  }

  return { tmp, http, router, routerUrl: router.url, coordinator, coordinatorDir, ...plane, shards, replicas, launched, health, killShardHard, restartShard, pids, waitForHealth }
}

interface Plane { coordinators: LaunchedProcess[], routers: LaunchedProcess[], etcd?: EtcdCluster, registryArgs: string[] }

async function startFilePlane (box: Sandbox, o: { dataDir: string, groups: string[], env?: NodeJS.ProcessEnv, extraArgs: string[] }): Promise<Plane> {
  const { coordinator, router } = await launchControlPlane({
    dataDir: o.dataDir,
    port: 0,
    groups: o.groups,
    env: { SHARDKV_LOG_LEVEL: 'info', ...o.env },
    extraArgs: o.extraArgs,
    readyTimeoutMs: 60_000
  })
  box.launched.push(coordinator, router)
  return { coordinators: [coordinator], routers: [router], registryArgs: [] }
}

/** etcd, then coordinators campaigning there (the first is waited for as leader), then routers following it. */
async function startEtcdPlane (box: Sandbox, etcd: EtcdCluster, o: { coordinators: number, routers: number, groups: string[], env?: NodeJS.ProcessEnv, extraArgs: string[] }): Promise<Plane> {
  const registryArgs = ['--registry', `etcd://${etcd.endpoints.map((e) => new URL(e).host).join(',')}`, '--registry-cluster', 'test']
  const env = { SHARDKV_LOG_LEVEL: 'info', ...o.env }
  const coordinators: LaunchedProcess[] = []
  for (let i = 0; i < o.coordinators; i++) {
    const p = await launchCoordinator({ name: `coordinator-${i + 1}`, dataDir: join(box.tmp, `coordinator-${i + 1}`), port: 0, groups: o.groups, env, extraArgs: [...registryArgs, ...o.extraArgs], readyTimeoutMs: 60_000 })
    box.launched.push(p)
    coordinators.push(p)
    // The first one leads: the map exists before the others stand by and the routers read it.
    if (i === 0) await waitFor(async () => (await box.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined))?.leader === true, 30_000, 'the first coordinator leads')
  }
  const routers: LaunchedProcess[] = []
  for (let i = 0; i < o.routers; i++) {
    const p = await launchRouter({ name: `router-${i + 1}`, port: 0, env, extraArgs: [...registryArgs, ...splitFlags(o.extraArgs, COORDINATOR_OPTIONS, ROUTER_OPTIONS).second], readyTimeoutMs: 60_000 })
    box.launched.push(p)
    routers.push(p)
  }
  return { coordinators, routers, etcd, registryArgs }
}

/** The coordinator that leads now, by its /healthz (throws after timeoutMs without one). */
export async function leadingCoordinator (c: Pick<TestCluster, 'http' | 'launched'>, timeoutMs = 30_000): Promise<LaunchedProcess> {
  return await waitFor(async () => {
    for (const p of c.launched.filter((x) => x.role === 'coordinator' && isAlive(x.pid))) {
      const h = await c.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined)
      if (h?.leader === true) return p
    }
    return undefined
  }, timeoutMs, 'a coordinator that leads')
}

/** The output of every process of a cluster, for a failing test's diagnostics. */
export function clusterOutput (c: { launched: LaunchedProcess[] }, lines = 40): string {
  return c.launched.map((p) => `--- ${p.name} (pid ${p.pid}) ---\n${p.output().split('\n').slice(-lines).join('\n')}`).join('\n')
}
