import { existsSync, rmSync, unwatchFile, watchFile } from 'node:fs'
import { join } from 'node:path'
import { launchCoordinator, launchRouter, launchShard, LaunchError, type LaunchCredentials, type LaunchedProcess, type ServiceRole } from './launcher'
import { launchEtcdMember, waitEtcdHealthy } from './etcd-members'
import { coordinatorPolicy, deposedRestart, leadingCoordinator, registryArgs, type EtcdPlane } from './etcd-plane'
import { peerPortFor, planReconcile, readNodes, readNodesFile, writeLauncherState, writeNodesFile, LAUNCHER_FILE, type LauncherNodeState, type NodeEntry } from './nodes-file'
import { SupervisedProcess, type SupervisorEvent } from './supervised'
import type { RestartPolicyOptions } from '../supervision/restart-policy'

/**
 * The cluster `npm start` runs and owns: every shard node listed in its nodes file
 * (src/local/nodes-file.ts), a coordinator and a router, each a SupervisedProcess (restarted from the
 * same data dir and port when it dies). The nodes file is polled: nodes the operator
 * scripts add are started and supervised here, nodes they remove are stopped here, so
 * every node of the local cluster lives and dies with the launcher. Every process is
 * given the cluster's credentials files (src/local/credentials.ts; with --tls also the
 * certificates of src/local/certificates.ts) and its peer port from the nodes file.
 * With `controlThreads`, the coordinator and the router are worker threads of this
 * process, supervised the same way (src/local/runner.ts).
 *
 * With the control plane on etcd (`etcd`, src/local/etcd-plane.ts) it also runs the etcd
 * members (first up, last down), several coordinators (coordinator-i on coordinator
 * port + i - 1, each with its own data dir, one leading) and several routers (router-j
 * on router port + j - 1), and every process finds the map in etcd.
 */

export interface ManagedClusterOptions {
  dataDir: string
  host: string
  routerPort: number
  /** The coordinator's client port (its admin API; routers relay there); 0 picks one on the first start. */
  coordinatorPort: number
  logDir: string
  policy?: RestartPolicyOptions
  /** How often the nodes file is read (default 500 ms). */
  pollMs?: number
  onEvent: (event: SupervisorEvent) => void
  /** A line for the operator about something other than one process (a bad nodes file). */
  onNotice: (line: string) => void
  /** Given to every process; absent: an unauthenticated cluster (`npm start -- --insecure`). */
  credentials?: LaunchCredentials
  /** The map in etcd (`npm start -- --registry etcd`); absent: the file registry, one coordinator and one router. */
  etcd?: EtcdPlane
  /**
   * File registry only: run the coordinator and the router as worker threads of this
   * process rather than as processes (npm start's default; --processes turns it off).
   */
  controlThreads?: boolean
}

/** A supervised process, with what the summary and launcher.json say about it. */
export interface ManagedProcess {
  name: string
  role: ServiceRole
  sup: SupervisedProcess
  /** Where it serves (its port is fixed, so known before it listens). */
  url: () => string
  peerPort?: number
  dataDir?: string
  /** A shard node's entry in the nodes file. */
  entry?: NodeEntry
}

/** How often the tokens file is checked for changes (watchTokensFile). */
const TOKENS_POLL_MS = 1000

/** How long the launcher waits for a coordinator to lead before it starts the rest (a stale leader key lapses in its TTL, 3 s). */
const LEADER_WAIT_MS = 30_000

export class ManagedCluster {
  private readonly nodes = new Map<string, ManagedProcess>()
  private readonly routers: ManagedProcess[] = []
  private readonly coordinators: ManagedProcess[] = []
  private readonly etcdMembers: ManagedProcess[] = []
  /** Pinned after the first start, so the router follows the same coordinator URL across restarts. */
  private coordinatorPort: number
  private timer: NodeJS.Timeout | undefined
  private reconciling: Promise<void> = Promise.resolve()
  private lastFile = ''
  /**
   * The coordinator's peer port, from the nodes file's `router` entry (desiredNodes: the
   * router held the coordinator before it was split out), so every restart of the
   * coordinator listens where the nodes' maps say it is.
   */
  private routerPeerPort: number | undefined
  private stopped = false
  private tokensFile: string | undefined

  constructor (private readonly opts: ManagedClusterOptions) {
    this.coordinatorPort = opts.coordinatorPort
  }

  get coordinatorUrl (): string {
    return this.urlAt(this.coordinatorPort)
  }

  /** Whether every process serves HTTPS (credentials with TLS files: npm start -- --tls). */
  get tls (): boolean {
    return this.opts.credentials?.tlsCertFile !== undefined
  }

  /** The (first) router's. */
  get routerUrl (): string {
    return this.urlAt(this.opts.routerPort)
  }

  urlOf (entry: NodeEntry): string {
    return this.urlAt(entry.port)
  }

  private urlAt (port: number): string {
    return `${this.tls ? 'https' : 'http'}://${this.opts.host}:${port}`
  }

  /**
   * The nodes to run: the nodes file when there is one, else `initial`. Written back
   * when it was missing or lacked peer ports (a file from before them), so the ports
   * chosen now are the ports of every later start.
   */
  desiredNodes (initial: NodeEntry[]): NodeEntry[] {
    const file = readNodesFile(this.opts.dataDir)
    const nodes = (file?.nodes ?? initial).map((n) => n.peerPort !== undefined ? n : { ...n, peerPort: peerPortFor(n.port) })
    const routerPeerPort = file?.router?.peerPort ?? peerPortFor(this.opts.routerPort)
    this.routerPeerPort = routerPeerPort
    const router = routerPeerPort === undefined ? {} : { router: { peerPort: routerPeerPort } }
    const next = { nodes, ...router, ...(this.tls ? { tls: true } : {}) }
    if (JSON.stringify(next) !== JSON.stringify(file)) writeNodesFile(this.opts.dataDir, next)
    return nodes
  }

  /**
   * Starts etcd's members (with etcd) and waits for their quorum, then the nodes (each gets
   * one attempt), the coordinators, the routers, then polling.
   */
  async start (nodes: readonly NodeEntry[]): Promise<void> {
    this.lastFile = JSON.stringify(nodes)
    if (this.opts.etcd !== undefined) await this.startEtcd(this.opts.etcd)
    if (this.stopped) return
    for (const e of nodes) this.startNode(e)
    await Promise.all([...this.nodes.values()].map(async (m) => await m.sup.firstAttempt))
    if (this.stopped) return
    const groups = new Map<string, string[]>()
    for (const e of nodes) groups.set(e.group, [...(groups.get(e.group) ?? []), this.urlOf(e)])
    // Used only for the first map; afterwards the persisted map (file or etcd) rules.
    const groupFlags = [...groups].map(([id, urls]) => `${id}=${urls.join('+')}`)
    if (this.opts.etcd === undefined) await this.startFileControl(groupFlags)
    else await this.startEtcdControl(this.opts.etcd, groupFlags)
    this.watchTokensFile()
    this.writeState()
    if (this.stopped) return
    this.timer = setInterval(() => { this.reconciling = this.reconciling.then(() => this.reconcile()) }, this.opts.pollMs ?? 500)
  }

  /** The coordinator and the router of the file registry, named and placed as before etcd existed. */
  private async startFileControl (groups: string[]): Promise<void> {
    const coordinator = this.supervise({ name: 'coordinator', role: 'coordinator', url: () => this.coordinatorUrl, peerPort: this.routerPeerPort, dataDir: join(this.opts.dataDir, 'coordinator') }, async () => {
      const p = await launchCoordinator({ ...this.common('coordinator'), ...this.threaded(), port: this.coordinatorPort, dataDir: join(this.opts.dataDir, 'coordinator'), groups, peerPort: this.routerPeerPort })
      this.coordinatorPort = Number(new URL(p.url).port)
      return p
    })
    this.coordinators.push(coordinator)
    if (!await coordinator.sup.firstAttempt && !this.stopped) throw new Error('the coordinator did not start (it is retried; see its log)')
    if (this.stopped) return
    const router = this.supervise({ name: 'router', role: 'router', url: () => this.routerUrl }, async () =>
      await launchRouter({ ...this.common('router'), ...this.threaded(), port: this.opts.routerPort, coordinator: this.coordinatorUrl }))
    this.routers.push(router)
    if (!await router.sup.firstAttempt && !this.stopped) throw new Error('the router did not start (it is retried; see its log)')
  }

  private threaded (): { thread?: true } {
    return this.opts.controlThreads === true ? { thread: true } : {}
  }

  /**
   * One edit of the tokens file reaches every part: each re-reads it on SIGHUP (a thread
   * gets it as a message), so the launcher sends one to all but etcd's members when the
   * file changes — polled, as an editor may replace the file rather than write it. Without
   * this, a thread could not be told at all: this process's own SIGHUP stops the cluster.
   */
  private watchTokensFile (): void {
    const file = this.opts.credentials?.tokensFile
    if (file === undefined) return
    this.tokensFile = file
    watchFile(file, { interval: TOKENS_POLL_MS, persistent: false }, (now, before) => {
      if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return
      for (const m of [...this.routers, ...this.coordinators, ...this.nodes.values()]) m.sup.current?.signal('SIGHUP')
    })
  }

  /** etcd's members, all at once (a member waits for its peers to form a quorum). */
  private async startEtcd (plane: EtcdPlane): Promise<void> {
    for (const m of plane.members) {
      const name = `etcd-${m.name}`
      this.etcdMembers.push(this.supervise({ name, role: 'etcd', url: () => m.clientUrl, peerPort: Number(new URL(m.peerUrl).port), dataDir: m.dataDir }, async () =>
        await launchEtcdMember(m, plane.members, plane.token, { name, logFile: join(this.opts.logDir, `${name}.log`), detached: true })))
    }
    const started = await Promise.all(this.etcdMembers.map(async (m) => await m.sup.firstAttempt))
    if (this.stopped) return
    if (!started.every(Boolean)) throw new Error('an etcd member did not start (see its log)')
    if (!await waitEtcdHealthy(plane.endpoints, 60_000)) throw new Error(`etcd (${plane.endpoints.join(', ')}) has no healthy quorum after 60 s`)
  }

  /**
   * The coordinators, then the routers. The first coordinator is given the time to lead
   * before the others campaign, so the map is in etcd before anyone reads it and the
   * coordinator listed first leads a fresh cluster.
   */
  private async startEtcdControl (plane: EtcdPlane, groups: string[]): Promise<void> {
    const registry = registryArgs(plane)
    for (const [i, slot] of this.coordinatorSlots(plane).entries()) {
      const { name, port, peerPort, dataDir } = slot
      const c = this.supervise({ name, role: 'coordinator', url: () => this.urlAt(port), peerPort, dataDir, plannedRestart: deposedRestart, policy: coordinatorPolicy(this.opts.policy) }, async () =>
        await launchCoordinator({ ...this.common(name), port, dataDir, groups, peerPort, extraArgs: registry }))
      this.coordinators.push(c)
      if (i > 0) continue
      if (!await c.sup.firstAttempt && !this.stopped) throw new Error(`${name} did not start (it is retried; see its log)`)
      if (this.stopped) return
      if (await this.leader(LEADER_WAIT_MS) === undefined) this.opts.onNotice(`no coordinator leads after ${LEADER_WAIT_MS / 1000} s; starting the rest anyway (see ${name}'s log)`)
      if (this.stopped) return
    }
    for (const { name, port } of this.routerSlots(plane)) {
      this.routers.push(this.supervise({ name, role: 'router', url: () => this.urlAt(port) }, async () =>
        await launchRouter({ ...this.common(name), port, extraArgs: registry })))
    }
    const up = await Promise.all([...this.coordinators, ...this.routers].map(async (p) => await p.sup.firstAttempt))
    if (!up.every(Boolean) && !this.stopped) throw new Error('a coordinator or a router did not start (it is retried; see its log)')
  }

  /** Coordinator i (from 1) on the coordinator port + i - 1, its peer listener 10000 above, its data in <data-dir>/coordinator-i. */
  private coordinatorSlots (plane: EtcdPlane): Array<{ name: string, port: number, peerPort: number | undefined, dataDir: string }> {
    return Array.from({ length: plane.coordinators }, (_, i) => {
      const port = this.coordinatorPort + i
      return { name: `coordinator-${i + 1}`, port, peerPort: peerPortFor(port), dataDir: join(this.opts.dataDir, `coordinator-${i + 1}`) }
    })
  }

  /** Router j (from 1) on the router port + j - 1. */
  private routerSlots (plane: EtcdPlane): Array<{ name: string, port: number }> {
    return Array.from({ length: plane.routers }, (_, j) => ({ name: `router-${j + 1}`, port: this.opts.routerPort + j }))
  }

  /** Every port the cluster will listen on, named, peer ports included (call after desiredNodes). */
  plannedPorts (nodes: readonly NodeEntry[]): Array<{ name: string, port: number | undefined }> {
    const plane = this.opts.etcd
    const control = plane === undefined
      ? [{ name: 'router', port: this.opts.routerPort }, { name: 'coordinator', port: this.coordinatorPort }, { name: 'coordinator peer', port: this.routerPeerPort }]
      : [
          ...plane.members.flatMap((m) => [{ name: `etcd-${m.name}`, port: Number(new URL(m.clientUrl).port) }, { name: `etcd-${m.name} peer`, port: Number(new URL(m.peerUrl).port) }]),
          ...this.coordinatorSlots(plane).flatMap((c) => [{ name: c.name, port: c.port }, { name: `${c.name} peer`, port: c.peerPort }]),
          ...this.routerSlots(plane)
        ]
    return [...control, ...nodes.flatMap((n) => [{ name: n.name, port: n.port }, { name: `${n.name} peer`, port: n.peerPort }])]
  }

  /** The coordinator that leads now, asking each one's /healthz for up to `timeoutMs`; undefined when none does. */
  async leader (timeoutMs: number): Promise<ManagedProcess | undefined> {
    return await leadingCoordinator(() => this.coordinators.filter((c) => c.sup.state === 'running'), (c) => c.url(), this.opts.credentials?.tlsCaFile, timeoutMs)
  }

  /** Every supervised process (routers, coordinators, nodes, etcd's members): the order they stop in. */
  processes (): ManagedProcess[] {
    return [...this.routers, ...this.coordinators, ...this.nodes.values(), ...this.etcdMembers]
  }

  /** Every process in the order a person reads them: etcd's members, coordinators, routers, nodes (file registry: router, coordinator, nodes). */
  listed (): ManagedProcess[] {
    const control = this.opts.etcd === undefined ? [...this.routers, ...this.coordinators] : [...this.etcdMembers, ...this.coordinators, ...this.routers]
    return [...control, ...this.nodes.values()]
  }

  /**
   * Operator stop: polling and restarts end, then the routers stop, the coordinators, every
   * node, and etcd's members last (nodes deregister and coordinators resign there as they stop).
   */
  async stop (timeoutMs?: number): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.tokensFile !== undefined) unwatchFile(this.tokensFile)
    for (const p of this.processes()) p.sup.cancelRestarts()
    await this.reconciling
    for (const group of [this.routers, this.coordinators, [...this.nodes.values()]]) {
      await Promise.all(group.map(async (m) => await m.sup.stop(timeoutMs)))
    }
    // One at a time, the last started first: members stopped together take the leader's
    // handover to one that is stopping too, and etcd waits out an election (seconds).
    for (const m of [...this.etcdMembers].reverse()) await m.sup.stop(timeoutMs)
    rmSync(join(this.opts.dataDir, LAUNCHER_FILE), { force: true })
  }

  /** What every shardkv process of the cluster is launched with. */
  private common (name: string): { name: string, host: string, logFile: string, detached: true, credentials: LaunchCredentials | undefined } {
    return { name, host: this.opts.host, logFile: join(this.opts.logDir, `${name}.log`), detached: true, credentials: this.opts.credentials }
  }

  private supervise (p: Omit<ManagedProcess, 'sup'> & { plannedRestart?: (st: { code: number | null }) => string | undefined, policy?: RestartPolicyOptions }, launch: () => Promise<LaunchedProcess>): ManagedProcess {
    const { plannedRestart, policy, ...shown } = p
    const sup = new SupervisedProcess({
      name: p.name,
      role: p.role,
      policy: policy ?? this.opts.policy,
      killGroupOnExit: true,
      onEvent: (e) => this.event(e),
      launch,
      ...(plannedRestart === undefined ? {} : { plannedRestart })
    })
    return { ...shown, sup }
  }

  private startNode (entry: NodeEntry): void {
    let first = true
    const registry = this.opts.etcd === undefined ? [] : registryArgs(this.opts.etcd)
    this.nodes.set(entry.name, this.supervise({ name: entry.name, role: 'shard', url: () => this.urlOf(entry), peerPort: entry.peerPort, dataDir: entry.dataDir, entry }, async () => {
      // A restart never recreates a missing data dir: a node whose disk is gone must be
      // replaced (it would come back empty under its old address), not restarted.
      if (!first && !existsSync(entry.dataDir)) throw new LaunchError(`its data dir ${entry.dataDir} is gone`, '')
      first = false
      return await launchShard({
        ...this.common(entry.name),
        group: entry.group,
        port: entry.port,
        dataDir: entry.dataDir,
        workers: entry.workers,
        peerPort: entry.peerPort,
        extraArgs: registry
      })
    }))
  }
  private async reconcile (): Promise<void> {
    if (this.stopped) return
    let desired: NodeEntry[] | undefined
    try {
      desired = readNodes(this.opts.dataDir)
    } catch (err) {
      const text = `bad nodes file: ${(err as Error).message}`
      if (text !== this.lastFile) this.opts.onNotice(`${text}; keeping the nodes as they are`)
      this.lastFile = text
      return
    }
    if (desired === undefined) return
    const text = JSON.stringify(desired)
    if (text === this.lastFile) return
    this.lastFile = text
    const running = new Map([...this.nodes].map(([name, m]) => [name, m.entry as NodeEntry]))
    const plan = planReconcile(desired, running)
    for (const name of plan.stop) {
      const m = this.nodes.get(name)
      if (m === undefined) continue
      this.opts.onNotice(`${name} was removed from the nodes file: stopping it`)
      await m.sup.stop()
      this.nodes.delete(name)
    }
    for (const e of plan.start) {
      if (this.stopped) return
      this.opts.onNotice(`${e.name} was added to the nodes file: starting it (group ${e.group}, port ${e.port}, data ${e.dataDir})`)
      this.startNode(e)
    }
    this.writeState()
  }

  private event (e: SupervisorEvent): void {
    this.opts.onEvent(e)
    if (!this.stopped) this.writeState()
  }

  private writeState (): void {
    const nodes: Record<string, LauncherNodeState> = {}
    for (const { name, url, sup } of this.processes()) nodes[name] = { state: sup.state, pid: sup.current?.pid ?? null, url: url() }
    try {
      writeLauncherState(this.opts.dataDir, { pid: process.pid, routerUrl: this.routerUrl, dataDir: this.opts.dataDir, nodes })
    } catch (err) {
      this.opts.onNotice(`cannot write ${LAUNCHER_FILE}: ${(err as Error).message}`)
    }
  }
}

