import { join } from 'node:path'
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { Test } from 'tap'
import { launchControlPlane, type LaunchedProcess } from '../../src/local/launcher'
import { GroupRing, type RingMember, type RingParams } from '../../src/ring/ring'
import type { ClusterView, GroupView, NodeView } from '../../src/protocol/cluster-view'
import type { NodeStats } from '../../src/protocol/node-answers'
import { kvPath } from '../../src/protocol/key'
import { HEADER, INTERNAL, KV_PREFIX, type WireKeyTransfer } from '../../src/protocol/wire'
import { sandbox, startShardIn, shardHealth, isAlive, waitUntilDead, sleep, type Sandbox, type ShardHealth } from './cluster'
import { HttpClient, type HttpResponse } from './http'
import type { HistoryChecker } from './checker'

/**
 * Helpers for the replication and failover tests (test/integration/failover*.test.ts,
 * replica-crash, deposed-primary) and the failover benchmark's ideas: a cluster of
 * shard groups with replica nodes (one process tree per node, --workers 1), the
 * replication view of GET /cluster, killing / freezing / restarting a node by the
 * PIDs its own /healthz reports, a probe that measures the time from a kill to the
 * first acknowledged write, and data comparisons between the nodes of a group.
 *
 * Every process is launched inside a Sandbox (test/harness/cluster.ts), whose tap
 * teardown stops it by PID and removes the temp dir; frozen (SIGSTOPped) PIDs are
 * continued by a teardown that runs before it, so nothing is left stopped.
 */


/** One shard node of the test cluster; `url` and `port` stay the same across restarts. */
export interface ReplNode {
  name: string
  group: string
  nodeId: string
  dataDir: string
  /** The port the node itself listens on. */
  port: number
  /** The node's url in the cluster map: its proxy's when it has one, else its own. */
  url: string
  /** Where the node itself listens (bypassing any proxy). */
  realUrl: string
  /** Present for nodes the map reaches through a TcpProxy (to cut them off). */
  proxy?: TcpProxy
  proc: LaunchedProcess
}

export interface ReplClusterOptions {
  /** Temp dir prefix and log label. */
  name: string
  groups: number
  /** Replica nodes per group. */
  replicas: number
  /** Worker processes per shard node (default 1: the machine has 2 cores). */
  workers?: number
  shardArgs?: string[]
  routerArgs?: string[]
  synchronous?: string
  /** Groups whose initial primary the cluster (coordinator, routers, replicas) reaches only through a TcpProxy. */
  proxyPrimaries?: string[]
  /**
   * Runs in the cluster's temp dir before anything starts (to write secrets, certificates…);
   * the flags it returns are added for every shard node and the router. See peer-auth.ts.
   */
  setup?: (tmp: string) => { shardArgs?: string[], routerArgs?: string[] }
  /** Headers the cluster's own HTTP client (views, health, the tests' requests) sends, e.g. an admin token. */
  clientHeaders?: () => Record<string, string>
}

/**
 * A TCP forwarder in front of a node, to cut it off from everyone who reaches it by its
 * map url (the coordinator's health checks, leases and map installs, the router's
 * data traffic, its replicas' view of it) while it keeps running. `partition()` turns
 * it into a black hole: bytes in either direction are dropped and new connections are
 * accepted and left unanswered, as on a network that silently loses packets.
 */
export class TcpProxy {
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private cut = false
  url = ''

  constructor (private readonly target: { host: string, port: number }) {
    this.server = createServer((client) => this.onConnection(client))
  }

  async listen (): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = this.server.address()
    if (address === null || typeof address !== 'object') throw new Error('proxy has no address')
    this.url = `http://127.0.0.1:${address.port}`
    return this.url
  }

  get partitioned (): boolean {
    return this.cut
  }

  partition (): void {
    this.cut = true
  }

  /** Forwards again; the connections that were black-holed are closed (their requests are lost). */
  heal (): void {
    this.cut = false
    for (const s of this.sockets) if ((s as Socket & { blackholed?: boolean }).blackholed === true) s.destroy()
  }

  private onConnection (client: Socket): void {
    this.sockets.add(client)
    client.on('close', () => this.sockets.delete(client))
    client.on('error', () => undefined)
    if (this.cut) {
      (client as Socket & { blackholed?: boolean }).blackholed = true
      client.resume() // read and drop
      return
    }
    const upstream = connect(this.target)
    this.sockets.add(upstream)
    upstream.on('close', () => { this.sockets.delete(upstream); client.destroy() })
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    // Forward chunk by chunk, dropping everything while partitioned (both directions).
    client.on('data', (d: Buffer) => {
      if (this.cut) { (client as Socket & { blackholed?: boolean }).blackholed = true; return }
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (this.cut) { (client as Socket & { blackholed?: boolean }).blackholed = true; return }
      client.write(d)
    })
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

export interface ReplCluster {
  box: Sandbox
  tmp: string
  http: HttpClient
  router: LaunchedProcess
  routerUrl: string
  coordinator: LaunchedProcess
  /** Every shard node ever started (initial ones first). */
  nodes: ReplNode[]
  byUrl: (url: string) => ReplNode
  view: () => Promise<ClusterView>
  /** Polls GET /cluster (every 100 ms) until `pred` holds; throws with the last view after timeoutMs. */
  waitForView: (pred: (v: ClusterView) => boolean, what: string, timeoutMs?: number) => Promise<ClusterView>
  health: (node: ReplNode) => Promise<ShardHealth>
  /** Supervisor PID and worker PIDs, from the node's own /healthz (checked against the launched PID). */
  pidsOf: (node: ReplNode) => Promise<number[]>
  /** SIGKILL the supervisor and every worker at once; `at` is when the signals were sent. */
  killHard: (node: ReplNode) => Promise<{ pids: number[], at: number }>
  /** Like killHard, with PIDs read before (pidsOf): the signals go out synchronously, at the call. */
  killPids: (node: ReplNode, pids: readonly number[]) => Promise<{ pids: number[], at: number }>
  /** SIGSTOP the supervisor and every worker; returns the PIDs (continued at teardown at the latest). */
  freeze: (node: ReplNode) => Promise<{ pids: number[], at: number }>
  /** SIGCONT PIDs frozen before. */
  thaw: (pids: readonly number[]) => void
  /** Starts the node again on its data dir and port. */
  restart: (node: ReplNode) => Promise<void>
  /** Starts a new, empty node (not in the map yet). */
  addNode: (group: string, name: string, proxied?: boolean) => Promise<ReplNode>
  /** Last lines of every process, for a failing test. */
  output: (lines?: number) => string
}

export function groupOf (view: Pick<ClusterView, 'groups'>, id: string): GroupView {
  const g = view.groups.find((x) => x.id === id)
  if (g === undefined) throw new Error(`group ${id} is not in the map`)
  return g
}

export function primaryUrl (view: Pick<ClusterView, 'groups'>, id: string): string {
  const n = groupOf(view, id).nodes.find((x) => x.role === 'primary')
  if (n === undefined) throw new Error(`group ${id} has no primary`)
  return n.url
}

export function replicaUrls (view: Pick<ClusterView, 'groups'>, id: string): string[] {
  return groupOf(view, id).nodes.filter((x) => x.role === 'replica').map((x) => x.url)
}

export function nodeView (view: Pick<ClusterView, 'groups'>, url: string): NodeView | undefined {
  for (const g of view.groups) {
    const n = g.nodes.find((x) => x.url === url)
    if (n !== undefined) return n
  }
  return undefined
}

/** A replica that is in the in-sync set, answers health checks and has no lag. */
export function replicaCaughtUp (view: Pick<ClusterView, 'groups'>, url: string): boolean {
  const n = nodeView(view, url)
  return n !== undefined && n.role === 'replica' && n.inSync === true && n.health === 'up' && n.lag === 0
}

/** Every replica of every group is in the in-sync set and up. */
export function allReplicasInSync (view: Pick<ClusterView, 'groups'>): boolean {
  return view.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))
}

/** One line per group: term, then each node's role, health, inSync, position and lag. */
export function describeView (view: ClusterView): string {
  return `epoch ${view.epoch}; ` + view.groups.map((g) => `${g.id} term ${g.term}: ` + g.nodes.map((n) =>
    `${n.url} ${n.role}${n.role === 'replica' ? (n.inSync === true ? ' in-sync' : ' out-of-sync') : ''} ${n.health} pos=${String(n.position)} lag=${String(n.lag)}`).join(', ')).join(' | ') +
    (view.rebalance === undefined || view.rebalance === null ? '' : ` | rebalance ${view.rebalance.phase}`)
}

/** The ring that places keys under a published map (its active groups). */
export function ringOfView (view: Pick<ClusterView, 'groups' | 'ring'>): GroupRing {
  return new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
}

/** `n` keys named `${prefix}/<i>` that the ring of `view` gives to `group`. */
export function keysOwnedBy (view: Pick<ClusterView, 'groups' | 'ring'>, group: string, n: number, prefix: string): string[] {
  const ring = ringOfView(view)
  const out: string[] = []
  for (let i = 0; out.length < n; i++) {
    if (i > 100_000) throw new Error(`could not find ${n} keys of ${group}`)
    const key = `${prefix}/${i}`
    if (ring.ownerOf(key) === group) out.push(key)
  }
  return out
}

export async function startReplicatedCluster (t: Test, opts: ReplClusterOptions): Promise<ReplCluster> {
  const box = sandbox(t, opts.name, opts.clientHeaders)
  const { tmp, http } = box
  const nodes: ReplNode[] = []
  const frozen = new Set<number>()
  const extra = opts.setup?.(tmp) ?? {}
  const shardArgs = [...(opts.shardArgs ?? []), ...(extra.shardArgs ?? [])]
  const routerArgs = [...(opts.routerArgs ?? []), ...(extra.routerArgs ?? [])]

  const launchNode = async (node: Pick<ReplNode, 'group' | 'nodeId' | 'dataDir' | 'port'>): Promise<LaunchedProcess> => await startShardIn(box, {
    group: node.group,
    nodeId: node.nodeId,
    dataDir: node.dataDir,
    port: node.port,
    workers: opts.workers ?? 1,
    synchronous: opts.synchronous ?? 'NORMAL',
    extraArgs: shardArgs
  })

  const proxies: TcpProxy[] = []
  const addNode = async (group: string, name: string, proxied = false): Promise<ReplNode> => {
    const base = { name, group, nodeId: `n-${name}`, dataDir: join(tmp, name), port: 0 }
    const proc = await launchNode(base)
    const port = Number(new URL(proc.url).port)
    const node: ReplNode = { ...base, port, url: proc.url, realUrl: proc.url, proc }
    if (proxied) {
      const proxy = new TcpProxy({ host: '127.0.0.1', port })
      proxies.push(proxy)
      node.url = await proxy.listen()
      node.proxy = proxy
    }
    nodes.push(node)
    await shardHealth(box, node.realUrl)
    return node
  }

  const output = (lines = 60): string => box.launched.map((p) => `--- ${p.name} (pid ${p.pid}) ---\n${p.output().split('\n').slice(-lines).join('\n')}`).join('\n')

  // Registered after the sandbox's teardown, so it runs first (tap runs them last-in first-out).
  t.teardown(async () => {
    await Promise.allSettled(proxies.map(async (p) => { await p.close() }))
    for (const pid of frozen) {
      try { process.kill(pid, 'SIGCONT') } catch { /* gone */ }
    }
    // SHARDKV_TEST_OUTPUT=1 prints every process's last lines even when the test passes.
    if (t.passing() === false || process.env.SHARDKV_TEST_OUTPUT === '1') t.comment(output(process.env.SHARDKV_TEST_OUTPUT === '1' ? 400 : 60))
  })

  const groupIds = Array.from({ length: opts.groups }, (_, i) => `g${i + 1}`)
  const started = await Promise.all(groupIds.map(async (g) => await Promise.all([
    addNode(g, g, opts.proxyPrimaries?.includes(g) === true),
    ...Array.from({ length: opts.replicas }, async (_, j) => await addNode(g, `${g}-r${j + 1}`))
  ])))

  const { coordinator, router } = await launchControlPlane({
    dataDir: join(tmp, 'coordinator'),
    port: 0,
    groups: started.map((members, i) => `${groupIds[i] as string}=${members.map((n) => n.url).join('+')}`),
    env: { SHARDKV_LOG_LEVEL: 'info' },
    extraArgs: routerArgs,
    readyTimeoutMs: 60_000
  })
  box.launched.push(coordinator, router)
  const routerUrl = router.url

  const byUrl = (url: string): ReplNode => {
    const n = nodes.find((x) => x.url === url)
    if (n === undefined) throw new Error(`no node at ${url}`)
    return n
  }

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

  // Straight to the node (not through its proxy): a partitioned node still answers here.
  const health = async (node: ReplNode): Promise<ShardHealth> => await shardHealth(box, node.realUrl)

  const pidsOf = async (node: ReplNode): Promise<number[]> => {
    const h = await health(node)
    if (h.pid !== node.proc.pid) throw new Error(`${node.name}: /healthz pid ${h.pid} is not the launched supervisor ${node.proc.pid}`)
    if (!Array.isArray(h.workerPids) || h.workerPids.length === 0) throw new Error(`${node.name}: /healthz lists no worker pids`)
    return [h.pid, ...h.workerPids]
  }

  const killPids = async (node: ReplNode, pids: readonly number[]): Promise<{ pids: number[], at: number }> => {
    const at = Date.now()
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await node.proc.exited
    await waitUntilDead(pids)
    return { pids: [...pids], at }
  }

  const killHard = async (node: ReplNode): Promise<{ pids: number[], at: number }> => await killPids(node, await pidsOf(node))

  const freeze = async (node: ReplNode): Promise<{ pids: number[], at: number }> => {
    const pids = await pidsOf(node)
    for (const pid of pids) frozen.add(pid)
    const at = Date.now()
    for (const pid of pids) process.kill(pid, 'SIGSTOP')
    return { pids, at }
  }

  const thaw = (pids: readonly number[]): void => {
    for (const pid of pids) {
      frozen.delete(pid)
      if (isAlive(pid)) {
        try { process.kill(pid, 'SIGCONT') } catch { /* gone */ }
      }
    }
  }

  const restart = async (node: ReplNode): Promise<void> => {
    // The port may not be free again at once: retry briefly.
    let lastErr: unknown
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        node.proc = await launchNode(node)
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

  return { box, tmp, http, router, routerUrl, coordinator, nodes, byUrl, view, waitForView, health, pidsOf, killHard, killPids, freeze, thaw, restart, addNode, output }
}

/**
 * Where a node serves its internal API: its peer listener when its /healthz reports one
 * (nodes started by the scripts have one), else its data port. Asked every time: a node
 * restarted by a test may come back on another peer port.
 */
export async function internalUrl (http: HttpClient, url: string): Promise<string> {
  const health = await http.getJson<ShardHealth>(`${url}/healthz`)
  if (health.peerPort === undefined) return url
  const u = new URL(url)
  return `${u.protocol}//${u.hostname}:${health.peerPort}`
}

export async function nodeStats (http: HttpClient, url: string): Promise<NodeStats> {
  return await http.getJson<NodeStats>(`${await internalUrl(http, url)}${INTERNAL.stats}`)
}

export interface RawRow { value: string, version: string, deleted: boolean }

/** A key's raw row at a node (tombstones included), or undefined when it holds none. */
export async function rawRow (http: HttpClient, url: string, key: string): Promise<RawRow | undefined> {
  const res = await http.request('GET', `${await internalUrl(http, url)}${INTERNAL.rowPrefix}${kvPath(key).slice(KV_PREFIX.length)}`)
  if (res.status !== 200) throw new Error(`GET /internal/row for ${key} at ${url}: ${res.status} ${res.text().slice(0, 200)}`)
  const row = res.json<WireKeyTransfer>().rows[0]
  if (row === undefined) return undefined
  return { value: Buffer.from(row.value, 'base64').toString('utf8'), version: row.version, deleted: row.deleted === true }
}

/**
 * Waits until the replica's /internal/stats position equals the primary's (no writes
 * should be running), then compares their live-key and tombstone counts and, for each
 * of `keys`, the raw rows (value, version, tombstone flag) on both nodes.
 */
export async function compareReplica (http: HttpClient, primary: string, replica: string, keys: readonly string[], timeoutMs = 20_000): Promise<{ primary: NodeStats, replica: NodeStats, mismatches: string[] }> {
  const deadline = Date.now() + timeoutMs
  let p = await nodeStats(http, primary)
  let r = await nodeStats(http, replica)
  while (r.position !== p.position && Date.now() < deadline) {
    await sleep(100)
    p = await nodeStats(http, primary)
    r = await nodeStats(http, replica)
  }
  const mismatches: string[] = []
  if (r.position !== p.position) mismatches.push(`positions differ: primary ${p.position}, replica ${r.position}`)
  for (const key of keys) {
    const [a, b] = await Promise.all([rawRow(http, primary, key), rawRow(http, replica, key)])
    if (a === undefined && b === undefined) continue
    if (a === undefined || b === undefined || a.version !== b.version || a.deleted !== b.deleted || a.value !== b.value) {
      mismatches.push(`${key}: primary ${JSON.stringify(a)} replica ${JSON.stringify(b)}`)
    }
  }
  return { primary: p, replica: r, mismatches }
}

export interface ProbeResult {
  /** ms from `since` to the first 2xx. */
  ms: number
  attempts: number
  /** Non-2xx answers and errors before it, e.g. "503 unavailable" (counted by kind). */
  failures: Record<string, number>
}

function failureKind (res: HttpResponse | Error): string {
  if (res instanceof Error) return `${res.name}${(res as { code?: string }).code === undefined ? '' : ` ${(res as { code?: string }).code ?? ''}`}`
  let code = ''
  try { code = String(res.json<{ error?: string }>().error ?? '') } catch { /* not JSON */ }
  return `${res.status}${code === '' ? '' : ` ${code}`}`
}

/**
 * Writes unique values to `keys` (round-robin) through the router, one at a time,
 * until one is acknowledged: the time from `since` (e.g. the kill) to that answer.
 * Every write goes to `checker` (started / acked / unknown), so the probe's own writes
 * are verified like the load's.
 */
export async function firstAckedWrite (http: HttpClient, routerUrl: string, keys: readonly string[], since: number, checker: HistoryChecker, opts: { timeoutMs?: number, tag?: string } = {}): Promise<ProbeResult> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000)
  const failures: Record<string, number> = {}
  let attempts = 0
  while (Date.now() < deadline) {
    const key = keys[attempts % keys.length] as string
    const value = `${opts.tag ?? 'probe'}|${key}|${attempts}|${Date.now()}`
    attempts++
    checker.writeStarted(key, value)
    let res: HttpResponse | Error
    try {
      res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 })
    } catch (err) {
      res = err as Error
    }
    if (!(res instanceof Error) && (res.status === 200 || res.status === 201)) {
      checker.writeAcked(key, value)
      return { ms: Date.now() - since, attempts, failures }
    }
    checker.writeUnknown(key, value)
    const kind = failureKind(res)
    failures[kind] = (failures[kind] ?? 0) + 1
    await sleep(10)
  }
  throw new Error(`no write to ${keys[0] ?? '?'}… was acknowledged within ${opts.timeoutMs ?? 60_000} ms (failures: ${JSON.stringify(failures)})`)
}

/** PUTs a unique value to each key at once through the router; every one must be acknowledged. */
export async function ackedBurst (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker, tag: string): Promise<void> {
  const bad: string[] = []
  await Promise.all(keys.map(async (key) => {
    const value = `${tag}|${key}|${Date.now()}`
    checker.writeStarted(key, value)
    try {
      const res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 })
      if (res.status === 200 || res.status === 201) checker.writeAcked(key, value)
      else { checker.writeUnknown(key, value); bad.push(`${key}: ${res.status} ${res.text().slice(0, 120)}`) }
    } catch (err) {
      checker.writeUnknown(key, value)
      bad.push(`${key}: ${String(err)}`)
    }
  }))
  if (bad.length > 0) throw new Error(`burst writes were not all acknowledged: ${bad.join('; ')}`)
}

/**
 * PUTs a unique value to each key at once through the router without waiting: every
 * write goes to `checker`; `acked()` tells how many were acknowledged so far, `done`
 * settles when all have an answer (or failed).
 */
export function startBurst (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker, tag: string): { acked: () => number, done: Promise<Array<{ key: string, status: number | string }>> } {
  let acked = 0
  const done = Promise.all(keys.map(async (key) => {
    const value = `${tag}|${key}|${Date.now()}`
    checker.writeStarted(key, value)
    try {
      const res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 30_000 })
      if (res.status === 200 || res.status === 201) { acked++; checker.writeAcked(key, value) } else checker.writeUnknown(key, value)
      return { key, status: res.status }
    } catch (err) {
      checker.writeUnknown(key, value)
      return { key, status: String(err) }
    }
  }))
  return { acked: () => acked, done }
}

/** Reads `keys` through the router into `checker.finalState` (retrying 5xx and errors a few times). */
export async function verifyKeys (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker): Promise<void> {
  for (const key of keys) {
    let got: string | null | { error: string } = { error: 'not read' }
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const res = await http.request('GET', routerUrl + kvPath(key), { timeoutMs: 15_000 })
        if (res.status === 200) { got = res.text(); break }
        if (res.status === 404) { got = null; break }
        got = { error: `status ${res.status} ${res.text().slice(0, 120)}` }
      } catch (err) {
        got = { error: String(err) }
      }
      await sleep(250 * (attempt + 1))
    }
    checker.finalState(key, got)
  }
}

/** Direct request to a shard node, as a router routing by `epoch` would send it. */
export async function directRequest (http: HttpClient, nodeUrl: string, method: 'GET' | 'PUT', key: string, epoch: number, body?: string, timeoutMs = 5000): Promise<HttpResponse | Error> {
  try {
    return await http.request(method, nodeUrl + kvPath(key), {
      ...(body === undefined ? {} : { body }),
      headers: { [HEADER.epoch]: String(epoch), ...(body === undefined ? {} : { 'content-type': 'text/plain; charset=utf-8' }) },
      timeoutMs
    })
  } catch (err) {
    return err as Error
  }
}

export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
