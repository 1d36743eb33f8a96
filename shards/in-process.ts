import type { Logger } from '../src/log'
import type { ListeningPorts, NodeServerOptions, NodeServing, SupervisorHooks } from './node-server'
import { NodeServer } from './node-server'

/**
 * A node served by its supervisor's own process (`--workers 0`, the default): one
 * NodeServer over the supervisor's KvStore, so the node has one process, one SQLite
 * connection and one writer. Every write of the node goes through one group commit
 * (one fsync for all of them, no waiting on another process's write lock), and the
 * shipper is called and answers directly instead of over IPC. What it gives up is what
 * workers are for: a crash of the serving code is a crash of the node (the launcher or
 * the orchestrator restarts it; a replica takes over meanwhile), and SIGUSR2 has no
 * workers to replace.
 */
export class InProcessServing implements NodeServing {
  private readonly server: NodeServer
  private readonly log: Logger
  private readonly shutdownTimeoutMs: number

  constructor (opts: Omit<NodeServerOptions, 'link' | 'clustered'>, hooks: SupervisorHooks) {
    this.log = opts.log
    this.shutdownTimeoutMs = opts.config.shutdownTimeoutMs
    this.server = new NodeServer({
      ...opts,
      clustered: false,
      link: {
        nodePid: process.pid,
        committed: () => hooks.committed(),
        mapInstalled: () => hooks.mapInstalled(),
        metricsText: async () => await hooks.metricsText(this.server.metrics.registry)
      }
    })
  }

  get workerCount (): number {
    return 0
  }

  async start (): Promise<ListeningPorts> {
    return await this.server.listen()
  }

  replicated (position: number): void {
    this.server.gate.update(position)
  }

  reloadTokens (): void {
    this.server.guard.reload()
  }

  async rollingRestart (): Promise<void> {
    this.log.warn({ event: 'rolling-restart-ignored', workers: 0 }, 'SIGUSR2: this node serves in its own process (--workers 0): there are no workers to replace; restart the node instead')
  }

  /** Like a worker's drain, bounded as the supervisor bounds a worker's. */
  async stop (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), this.shutdownTimeoutMs) })
    if (await Promise.race([this.server.close(), timedOut]) === 'timeout') {
      this.log.warn({ event: 'drain-timeout' }, 'requests did not finish in time; stopping without them')
    }
    clearTimeout(timer)
  }
}
