import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { launchCoordinator, launchRouter, launchShard, LaunchError, type LaunchCredentials } from './launcher'
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
}

interface Managed { entry: NodeEntry, sup: SupervisedProcess }

export class ManagedCluster {
  private readonly nodes = new Map<string, Managed>()
  private router: SupervisedProcess | undefined
  private coordinator: SupervisedProcess | undefined
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

  constructor (private readonly opts: ManagedClusterOptions) {
    this.coordinatorPort = opts.coordinatorPort
  }

  get coordinatorUrl (): string {
    return `${this.tls ? 'https' : 'http'}://${this.opts.host}:${this.coordinatorPort}`
  }

  /** Whether every process serves HTTPS (credentials with TLS files: npm start -- --tls). */
  get tls (): boolean {
    return this.opts.credentials?.tlsCertFile !== undefined
  }

  get routerUrl (): string {
    return `${this.tls ? 'https' : 'http'}://${this.opts.host}:${this.opts.routerPort}`
  }

  urlOf (entry: NodeEntry): string {
    return `${this.tls ? 'https' : 'http'}://${this.opts.host}:${entry.port}`
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

  /** Starts the nodes (each gets one attempt before the router starts), then the router, then polling. */
  async start (nodes: readonly NodeEntry[]): Promise<void> {
    this.lastFile = JSON.stringify(nodes)
    for (const e of nodes) this.startNode(e)
    await Promise.all([...this.nodes.values()].map(async (m) => await m.sup.firstAttempt))
    if (this.stopped) return
    const groups = new Map<string, string[]>()
    for (const e of nodes) groups.set(e.group, [...(groups.get(e.group) ?? []), this.urlOf(e)])
    this.coordinator = new SupervisedProcess({
      name: 'coordinator',
      role: 'coordinator',
      policy: this.opts.policy,
      killGroupOnExit: true,
      onEvent: (e) => this.event(e),
      launch: async () => {
        const p = await launchCoordinator({
          name: 'coordinator',
          host: this.opts.host,
          port: this.coordinatorPort,
          dataDir: join(this.opts.dataDir, 'coordinator'),
          // Used only for the first map; afterwards the coordinator's persisted map rules.
          groups: [...groups].map(([id, urls]) => `${id}=${urls.join('+')}`),
          logFile: join(this.opts.logDir, 'coordinator.log'),
          detached: true,
          peerPort: this.routerPeerPort,
          credentials: this.opts.credentials
        })
        this.coordinatorPort = Number(new URL(p.url).port)
        return p
      }
    })
    if (!await this.coordinator.firstAttempt && !this.stopped) throw new Error('the coordinator did not start (it is retried; see its log)')
    this.router = new SupervisedProcess({
      name: 'router',
      role: 'router',
      policy: this.opts.policy,
      killGroupOnExit: true,
      onEvent: (e) => this.event(e),
      launch: async () => await launchRouter({
        name: 'router',
        host: this.opts.host,
        port: this.opts.routerPort,
        coordinator: this.coordinatorUrl,
        logFile: join(this.opts.logDir, 'router.log'),
        detached: true,
        credentials: this.opts.credentials
      })
    })
    const ok = await this.router.firstAttempt
    this.writeState()
    if (!ok && !this.stopped) throw new Error('the router did not start (it is retried; see its log)')
    this.timer = setInterval(() => { this.reconciling = this.reconciling.then(() => this.reconcile()) }, this.opts.pollMs ?? 500)
  }

  /** Every supervised process with its state (router first, then the coordinator). */
  processes (): Array<{ name: string, entry?: NodeEntry, sup: SupervisedProcess }> {
    return [
      ...(this.router === undefined ? [] : [{ name: 'router', sup: this.router }]),
      ...(this.coordinator === undefined ? [] : [{ name: 'coordinator', sup: this.coordinator }]),
      ...[...this.nodes.values()].map((m) => ({ name: m.entry.name, entry: m.entry, sup: m.sup }))
    ]
  }

  /** Operator stop: polling and restarts end, the router stops, the coordinator, then every node (in parallel). */
  async stop (timeoutMs?: number): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const p of this.processes()) p.sup.cancelRestarts()
    await this.reconciling
    await this.router?.stop(timeoutMs)
    await this.coordinator?.stop(timeoutMs)
    await Promise.all([...this.nodes.values()].map(async (m) => await m.sup.stop(timeoutMs)))
    rmSync(join(this.opts.dataDir, LAUNCHER_FILE), { force: true })
  }

  private startNode (entry: NodeEntry): void {
    let first = true
    const sup = new SupervisedProcess({
      name: entry.name,
      role: 'shard',
      policy: this.opts.policy,
      killGroupOnExit: true,
      onEvent: (e) => this.event(e),
      launch: async () => {
        // A restart never recreates a missing data dir: a node whose disk is gone must be
        // replaced (it would come back empty under its old address), not restarted.
        if (!first && !existsSync(entry.dataDir)) throw new LaunchError(`its data dir ${entry.dataDir} is gone`, '')
        first = false
        return await launchShard({
          name: entry.name,
          group: entry.group,
          host: this.opts.host,
          port: entry.port,
          dataDir: entry.dataDir,
          workers: entry.workers,
          logFile: join(this.opts.logDir, `${entry.name}.log`),
          detached: true,
          peerPort: entry.peerPort,
          credentials: this.opts.credentials
        })
      }
    })
    this.nodes.set(entry.name, { entry, sup })
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
    const running = new Map([...this.nodes].map(([name, m]) => [name, m.entry]))
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
    for (const { name, entry, sup } of this.processes()) {
      nodes[name] = { state: sup.state, pid: sup.current?.pid ?? null, url: entry !== undefined ? this.urlOf(entry) : name === 'coordinator' ? this.coordinatorUrl : this.routerUrl }
    }
    try {
      writeLauncherState(this.opts.dataDir, { pid: process.pid, routerUrl: this.routerUrl, dataDir: this.opts.dataDir, nodes })
    } catch (err) {
      this.opts.onNotice(`cannot write ${LAUNCHER_FILE}: ${(err as Error).message}`)
    }
  }
}

