import type tap from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { launchCoordinator, launchRouter, launchShard, type LaunchedProcess, type LogEvent } from '../../src/local/launcher'
import type { ClusterView } from '../../src/protocol/cluster-view'
import type { ShardHealth } from '../../src/protocol/node-answers'
import { clusterOutput, isAlive, sandbox, shardHealth, waitFor, type Sandbox } from './cluster'
import { startEtcd, type EtcdCluster } from './etcd'
import type { HttpClient } from './http'
import { startNetwork, type NetHost, type TestNetwork } from './netns'

/**
 * An etcd-mode cluster placed on hosts of a test network (./netns.ts): every etcd member,
 * coordinator, shard node and router runs inside a namespace of its own (or one it shares
 * with what the layout puts beside it), listening on that host's address, so a test can
 * partition any two parts for real (`block`: packets dropped) while the rest keeps talking.
 * The test process reaches every host over the bridge, as a client on the same network.
 *
 * Processes are started by the sandbox of ./cluster.ts (stopped by PID at teardown), etcd by
 * ./etcd.ts on its hosts, and the network is deleted last (tap runs teardowns last-in first-out).
 * Every process also logs to a file in the sandbox, so a test can read when an event happened
 * (pino's `time`) however much the process printed meanwhile.
 */

export interface PlaneLayout {
  /** A host per etcd member. */
  etcd: string[]
  /** A host per coordinator; the first is waited for as the leader before the others start. */
  coordinators: string[]
  /** Group id -> a host per node; the first node is the group's primary. */
  groups: Record<string, string[]>
  /** A host per router (following the map in etcd). */
  routers: string[]
}

export interface PlaneOptions {
  name: string
  layout: PlaneLayout
  /** Worker processes per shard node (default 1). */
  workers?: number
  shardArgs?: string[]
  coordinatorArgs?: string[]
  routerArgs?: string[]
}

export interface PlaneNode {
  group: string
  nodeId: string
  host: NetHost
  url: string
  proc: LaunchedProcess
}

export interface NetPlane {
  net: TestNetwork
  box: Sandbox
  http: HttpClient
  etcd: EtcdCluster
  /** The flags that point a process at the plane's etcd. */
  registryArgs: string[]
  host: (name: string) => NetHost
  nodes: PlaneNode[]
  coordinators: LaunchedProcess[]
  routers: LaunchedProcess[]
  /** Drops every packet between host `a` and each of `others` (both directions); `unblock` heals. */
  block: (a: string, others: string[]) => void
  unblock: (a: string, others: string[]) => void
  /** The coordinator whose /healthz says it leads (waits up to timeoutMs). */
  leader: (timeoutMs?: number) => Promise<LaunchedProcess>
  /** The map as a router (relaying to the leader) shows it; undefined while none answers. */
  view: (router?: LaunchedProcess) => Promise<ClusterView | undefined>
  nodeHealth: (node: PlaneNode) => Promise<ShardHealth>
  /** Every JSON line of a process's log file whose `event` is `name`. */
  events: (proc: LaunchedProcess, name: string) => LogEvent[]
  /** Every process's last lines, for a failing test's diagnostics. */
  output: () => string
}

/** Unique host names in the order hosts are made: etcd's first (./etcd.ts puts member i on host i). */
function hostNames (layout: PlaneLayout): string[] {
  const all = [...layout.etcd, ...layout.coordinators, ...Object.values(layout.groups).flat(), ...layout.routers]
  return [...new Set(all)]
}

/** `--insecure`: the processes listen on non-loopback addresses of a network only this test can reach. */
const OPEN = ['--insecure']

export async function startNetPlane (t: tap.Test, opts: PlaneOptions): Promise<NetPlane> {
  const { layout } = opts
  if (new Set(layout.etcd).size !== layout.etcd.length) throw new Error('one etcd member per host')
  const names = hostNames(layout)
  const net = startNetwork(t, { hosts: names.length })
  const byName = new Map(names.map((n, i) => [n, net.hosts[i] as NetHost]))
  const host = (name: string): NetHost => {
    const h = byName.get(name)
    if (h === undefined) throw new Error(`no host ${name} in the layout`)
    return h
  }
  const etcd = await startEtcd(t, { members: layout.etcd.length, name: opts.name, network: net })
  const box = sandbox(t, `netns-${opts.name}`)
  const registryArgs = ['--registry', `etcd://${etcd.endpoints.map((e) => new URL(e).host).join(',')}`, '--registry-cluster', opts.name]
  const logFile = (name: string): string => join(box.tmp, 'logs', `${name}.log`)
  const common = (name: string, h: NetHost): { name: string, host: string, netns: string, port: number, logFile: string, env: NodeJS.ProcessEnv, readyTimeoutMs: number } =>
    ({ name, host: h.ip, netns: h.name, port: 0, logFile: logFile(name), env: { SHARDKV_LOG_LEVEL: 'info' }, readyTimeoutMs: 60_000 })

  const nodes = await startNodes(box, opts, host, common)
  const groups = Object.keys(layout.groups).map((g) => `${g}=${nodes.filter((n) => n.group === g).map((n) => n.url).join('+')}`)
  const coordinators: LaunchedProcess[] = []
  for (const [i, name] of layout.coordinators.entries()) {
    const p = await launchCoordinator({ ...common(`coordinator-${i + 1}`, host(name)), dataDir: join(box.tmp, `coordinator-${i + 1}`), groups, extraArgs: [...registryArgs, ...OPEN, ...(opts.coordinatorArgs ?? [])] })
    box.launched.push(p)
    coordinators.push(p)
    // The first one leads: the map exists before the others stand by and the routers read it.
    if (i === 0) await waitFor(async () => (await box.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined))?.leader === true, 30_000, 'the first coordinator leads')
  }
  const routers: LaunchedProcess[] = []
  for (const [i, name] of layout.routers.entries()) {
    const p = await launchRouter({ ...common(`router-${i + 1}`, host(name)), extraArgs: [...registryArgs, ...OPEN, ...(opts.routerArgs ?? [])] })
    box.launched.push(p)
    routers.push(p)
  }

  const pairs = (a: string, others: string[]): Array<[NetHost, NetHost]> => others.filter((o) => o !== a).map((o) => [host(a), host(o)])
  return {
    net,
    box,
    http: box.http,
    etcd,
    registryArgs,
    host,
    nodes,
    coordinators,
    routers,
    block: (a, others) => { for (const [x, y] of pairs(a, others)) net.block(x, y) },
    unblock: (a, others) => { for (const [x, y] of pairs(a, others)) net.unblock(x, y) },
    leader: async (timeoutMs = 30_000) => await leaderOf(box, coordinators, timeoutMs),
    view: async (router = routers[0]) => router === undefined ? undefined : await box.http.getJson<ClusterView>(`${router.url}/cluster`).catch(() => undefined),
    nodeHealth: async (node) => await shardHealth(box, node.url),
    events: (proc, name) => eventsIn(logFile(proc.name), name),
    output: () => clusterOutput(box)
  }
}

type Common = (name: string, h: NetHost) => { name: string, host: string, netns: string, port: number, logFile: string, env: NodeJS.ProcessEnv, readyTimeoutMs: number }

/** Every group's nodes, in parallel; each one's /healthz is read once so the sandbox knows its workers (and to check its PID). */
async function startNodes (box: Sandbox, opts: PlaneOptions, host: (name: string) => NetHost, common: Common): Promise<PlaneNode[]> {
  const specs = Object.entries(opts.layout.groups).flatMap(([group, hosts]) =>
    hosts.map((h, i) => ({ group, nodeId: i === 0 ? `${group}-n1` : `${group}-r${i}`, host: host(h) })))
  return await Promise.all(specs.map(async (s) => {
    const proc = await launchShard({
      ...common(s.nodeId, s.host),
      dataDir: join(box.tmp, s.nodeId),
      workers: opts.workers ?? 1,
      nodeId: s.nodeId,
      group: s.group,
      synchronous: 'NORMAL',
      extraArgs: [...OPEN, ...(opts.shardArgs ?? [])]
    })
    box.launched.push(proc)
    // `ip netns exec` execs node, so the PID the sandbox stops is the node's own: checked, not assumed.
    const h = await shardHealth(box, proc.url)
    if (h.pid !== proc.pid) throw new Error(`${s.nodeId}: /healthz pid ${h.pid} is not the launched pid ${proc.pid}`)
    return { ...s, url: proc.url, proc }
  }))
}

async function leaderOf (box: Sandbox, coordinators: LaunchedProcess[], timeoutMs: number): Promise<LaunchedProcess> {
  return await waitFor(async () => {
    for (const p of coordinators.filter((x) => isAlive(x.pid))) {
      const h = await box.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined)
      if (h?.leader === true) return p
    }
    return undefined
  }, timeoutMs, 'a coordinator that leads')
}

function eventsIn (file: string, name: string): LogEvent[] {
  if (!existsSync(file)) return []
  const out: LogEvent[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const e = JSON.parse(line) as LogEvent
      if (e.event === name) out.push(e)
    } catch { /* a partial last line */ }
  }
  return out
}

/** When a log event happened (pino's ISO `time`), ms since the epoch. */
export function eventTime (e: LogEvent): number {
  const ms = Date.parse(String(e.time))
  if (Number.isNaN(ms)) throw new Error(`log event without a time: ${JSON.stringify(e)}`)
  return ms
}
