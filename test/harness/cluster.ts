import { join } from 'node:path'
import type { Test } from 'tap'
import { launchControlPlane, launchCoordinator, launchRouter, type LaunchedProcess } from '../../src/local/launcher'
import type { ClusterView } from '../../src/protocol/cluster-view'
import type { ShardHealth } from '../../src/protocol/node-answers'
import { COORDINATOR_OPTIONS, ROUTER_OPTIONS, splitFlags } from '../../src/config/options'
import { startEtcd, type EtcdCluster } from './etcd'
import type { HttpClient } from './http'
import { TcpProxy } from './tcp-proxy'
import { describeView } from './cluster-view'
import { isAlive, nodeControl, sandbox, shardHealth, sleep, startShardIn, waitFor, type ClusterNode, type LaunchNode, type NodeControl, type Sandbox } from './cluster-nodes'

export { isAlive, sandbox, shardHealth, sleep, startShardIn, waitFor, waitUntilDead, type ClusterNode, type Sandbox, type ShardStartOptions } from './cluster-nodes'
export type { ShardHealth }

/**
 * The one way integration tests start a cluster: shard groups of a primary and replicas,
 * coordinators and routers, on 127.0.0.1 with OS-chosen ports, in a fresh temp dir, with the
 * map in the file registry (one coordinator) or in a real etcd cluster started for the test
 * (several coordinators campaigning, several routers following). The teardown is registered
 * before anything starts, so it runs even when a start or an assertion fails: it continues
 * frozen PIDs, closes the proxies, prints every process's last lines when the test failed,
 * stops every process it launched by PID (SIGTERM, then SIGKILL), kills any worker PID it
 * ever saw that is still alive and provably ours, and removes the temp dir.
 */

export interface ClusterOptions {
  /** Temp dir prefix and log label (default `it`). */
  name?: string
  /** Shard groups, `g1`…`gN` (default 3). */
  groups?: number
  /** Replica nodes per group (default 0). */
  replicas?: number
  /** Worker processes per shard node (default 0: each node serves in its own process, as npm start runs it). */
  workers?: number
  /** Extra flags for every shard node / the control plane (split between the coordinator and the router by which knows each). */
  shardArgs?: string[]
  routerArgs?: string[]
  env?: NodeJS.ProcessEnv
  /** SQLite synchronous level for shard nodes (default NORMAL: fast, still crash-safe for processes). */
  synchronous?: string
  /**
   * Called with the cluster's temp dir before anything starts: writes files the processes
   * need (a tokens file, a cluster secret, certificates) there and returns the flags
   * naming them, added to shardArgs / routerArgs. The teardown removes the dir with them.
   */
  prepare?: (tmp: string) => { shardArgs?: string[], routerArgs?: string[] }
  /** Groups whose initial primary the cluster (coordinator, routers, replicas) reaches only through a TcpProxy. */
  proxyPrimaries?: string[]
  /** Headers the cluster's own HTTP client (views, health, the tests' requests) sends, e.g. an admin token. */
  clientHeaders?: () => Record<string, string>
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

export interface TestCluster extends NodeControl {
  box: Sandbox
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
  /** Every shard node ever started (the initial ones first). */
  nodes: ClusterNode[]
  /** Each group's first node (its primary at the start), in group order. */
  primaries: ClusterNode[]
  /** Every group's initial replicas (`group` names theirs), in group order. */
  replicas: ClusterNode[]
  /** Every process this cluster launched (restarts included). */
  launched: LaunchedProcess[]
  /** The node whose map url this is (throws when none is). */
  byUrl: (url: string) => ClusterNode
  view: () => Promise<ClusterView>
  /** Polls GET /cluster (every 100 ms) until `pred` holds; throws with the last view after timeoutMs. */
  waitForView: (pred: (v: ClusterView) => boolean, what: string, timeoutMs?: number) => Promise<ClusterView>
  /** Starts a new, empty node of `group` named `name` (not in the map yet). */
  addNode: (group: string, name: string, proxied?: boolean) => Promise<ClusterNode>
  /** The PIDs of the router, the coordinator and every group's first node (supervisor, then workers in order). */
  pids: () => Promise<Map<string, number[]>>
  /** Last lines of every process, for a failing test. */
  output: (lines?: number) => string
}

export async function startCluster (t: Test, opts: ClusterOptions = {}): Promise<TestCluster> {
  const name = opts.name ?? 'it'
  // Before the sandbox, so that its teardown (tap runs them last-in first-out) stops etcd after every process.
  const etcd = opts.etcdMembers === undefined ? undefined : await startEtcd(t, { members: opts.etcdMembers, name })
  const box = sandbox(t, name, opts.clientHeaders)
  const prepared = opts.prepare?.(box.tmp) ?? {}
  const shardArgs = [...(opts.shardArgs ?? []), ...(prepared.shardArgs ?? [])]
  const routerArgs = [...(opts.routerArgs ?? []), ...(prepared.routerArgs ?? [])]
  const launch: LaunchNode = async (node) => await startShardIn(box, {
    group: node.group, nodeId: node.nodeId, dataDir: node.dataDir, port: node.port, workers: opts.workers ?? 0, synchronous: opts.synchronous, env: opts.env, extraArgs: shardArgs
  })
  const control = nodeControl(box, launch)
  const nodes: ClusterNode[] = []
  const proxies: TcpProxy[] = []
  const output = (lines = 60): string => clusterOutput(box, lines)
  // Registered after the sandbox's teardown, so it runs first: nothing stays stopped, and the output is read while every process is still there.
  t.teardown(async () => {
    await Promise.allSettled(proxies.map(async (p) => { await p.close() }))
    control.thawAll()
    // SHARDKV_TEST_OUTPUT=1 prints every process's last lines even when the test passes.
    if (t.passing() === false || process.env.SHARDKV_TEST_OUTPUT === '1') t.comment(output(process.env.SHARDKV_TEST_OUTPUT === '1' ? 400 : 60))
  })
  const addNode = async (group: string, nodeName: string, proxied = false): Promise<ClusterNode> => {
    const node = await startNode(launch, { name: nodeName, group, nodeId: `n-${nodeName}`, dataDir: join(box.tmp, nodeName) }, proxied ? proxies : undefined)
    nodes.push(node)
    await shardHealth(box, node.realUrl)
    return node
  }
  const groupIds = Array.from({ length: opts.groups ?? 3 }, (_, i) => `g${i + 1}`)
  const members = await Promise.all(groupIds.map(async (g) => await Promise.all([
    addNode(g, g, opts.proxyPrimaries?.includes(g) === true),
    ...Array.from({ length: opts.replicas ?? 0 }, async (_, j) => await addNode(g, `${g}-r${j + 1}`))
  ])))
  const coordinatorDir = join(box.tmp, 'coordinator')
  const groups = members.map((m, i) => `${groupIds[i] as string}=${m.map((x) => x.url).join('+')}`)
  const plane = etcd === undefined
    ? await startFilePlane(box, { dataDir: coordinatorDir, groups, env: opts.env, extraArgs: routerArgs })
    : await startEtcdPlane(box, etcd, { coordinators: opts.coordinators ?? 2, routers: opts.routers ?? 2, groups, env: opts.env, extraArgs: routerArgs })
  const coordinator = plane.coordinators[0] as LaunchedProcess
  const router = plane.routers[0] as LaunchedProcess
  const primaries = members.map((m) => m[0] as ClusterNode)
  const views = clusterViews(box.http, router.url)
  const byUrl = (url: string): ClusterNode => {
    const n = nodes.find((x) => x.url === url)
    if (n === undefined) throw new Error(`no node at ${url}`)
    return n
  }
  return {
    ...control, ...plane, ...views, box, tmp: box.tmp, http: box.http, router, routerUrl: router.url, coordinator, coordinatorDir,
    nodes, primaries, replicas: members.flatMap((m) => m.slice(1)), launched: box.launched, byUrl, addNode, pids: async () => await processIds(control, router, coordinator, primaries), output
  }
}

async function processIds (control: NodeControl, router: LaunchedProcess, coordinator: LaunchedProcess, primaries: ClusterNode[]): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>([['router', [router.pid]], ['coordinator', [coordinator.pid]]])
  for (const s of primaries) {
    const h = await control.health(s)
    out.set(s.group, [h.pid, ...[...h.workerPids].sort((a, b) => a - b)])
  }
  return out
}

/** Launches a node on an OS-chosen port, behind a new TcpProxy (added to `proxies`) when that is given. */
async function startNode (launch: LaunchNode, base: Pick<ClusterNode, 'name' | 'group' | 'nodeId' | 'dataDir'>, proxies?: TcpProxy[]): Promise<ClusterNode> {
  const proc = await launch({ ...base, port: 0 })
  const node: ClusterNode = { ...base, port: Number(new URL(proc.url).port), url: proc.url, realUrl: proc.url, proc }
  if (proxies !== undefined) {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: node.port })
    proxies.push(proxy)
    node.url = await proxy.listen()
    node.proxy = proxy
  }
  return node
}

function clusterViews (http: HttpClient, routerUrl: string): Pick<TestCluster, 'view' | 'waitForView'> {
  const view = async (): Promise<ClusterView> => await http.getJson<ClusterView>(`${routerUrl}/cluster`)
  const waitForView = async (pred: (v: ClusterView) => boolean, what: string, timeoutMs = 30_000): Promise<ClusterView> => {
    const deadline = Date.now() + timeoutMs
    let last: ClusterView | undefined
    let lastErr: unknown
    while (Date.now() < deadline) {
      try {
        last = await view()
        if (pred(last)) return last
      } catch (err) {
        lastErr = err
      }
      await sleep(100)
    }
    throw new Error(`GET /cluster did not show ${what} within ${timeoutMs} ms; last: ${last === undefined ? 'none' : describeView(last)}${lastErr === undefined ? '' : `; last error: ${String(lastErr)}`}`)
  }
  return { view, waitForView }
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
