import cluster, { type Worker } from 'node:cluster'
import { anyFreePort } from '../src/local/ports'
import type { ShardConfig } from '../src/config/options'
import type { Logger } from '../src/log'
import type { SupervisorMetrics } from './metrics'
import { RestartPolicy } from './restart-policy'
import { isShardMessage, WORKER_CONFIG_ENV, type SupervisorMessage, type WorkerMessage } from './ipc'
import type { ListeningPorts, NodeServing, SupervisorHooks } from './node-server'

type Reason = 'initial' | 'crash' | 'rolling-restart'

/**
 * A node served by forked `cluster` workers (`--workers N`, N ≥ 1), each a NodeServer
 * over its own SQLite connection: forks them, replaces one that dies, restarts them one
 * at a time on SIGUSR2 and drains them all on stop; relays what they ask of the
 * supervisor (ship now, a map was installed, the node's metrics) and what it tells them.
 */
export class WorkerPool implements NodeServing {
  private readonly restartPolicy = new RestartPolicy()
  /** Workers we asked to exit: their exit is not a crash. */
  private readonly leaving = new Set<number>()
  private port: number
  /** The peer listener's port (-1: internal endpoints on the data port); resolved like `port`. */
  private peerPort: number
  private stopping = false
  /** Until the first workers listen, a worker that dies is not replaced: start() decides. */
  private starting = true
  private rolling = false
  /** Last replicated position broadcast, handed to every new worker. */
  private position = -1

  constructor (
    private readonly config: ShardConfig,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics,
    private readonly hooks: SupervisorHooks
  ) {
    this.port = config.port
    this.peerPort = config.peerPort
  }

  get workerCount (): number {
    return this.liveWorkers().length
  }

  async start (): Promise<ListeningPorts> {
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal))
    cluster.on('message', (worker, msg: unknown) => this.onMessage(worker, msg))
    await this.forkInitialWorkers()
    return { port: this.port, peerPort: this.peerPort }
  }

  replicated (position: number): void {
    this.position = position
    this.send({ type: 'shardkv:replicated', position })
  }

  reloadTokens (): void {
    this.send({ type: 'shardkv:reload-tokens' })
  }

  /**
   * To every worker still connected, draining ones included: a draining worker's writes
   * in flight wait for the replicated position, and without it they would hang until the
   * drain timeout kills the worker (a stalled, then failed request per restarted worker).
   */
  private send (msg: SupervisorMessage): void {
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected() === true) w.send(msg)
  }

  /**
   * Workers share the primary's listening handle only when they ask for the same port,
   * and a port-0 handle would get a new port if every worker died. So port 0 is resolved
   * here to a concrete free port that every fork then uses — and, since another process
   * may take that port between the probe and the workers' bind, resolved again (a few
   * times) when the first workers fail to listen.
   */
  private async forkInitialWorkers (): Promise<void> {
    const pickPort = this.port === 0
    const pickPeerPort = this.peerPort === 0
    for (let attempt = 1; ; attempt++) {
      if (pickPort) this.port = await anyFreePort(this.config.host)
      // A closed probe's port may come back at once: the two listeners need two ports.
      if (pickPeerPort) {
        do this.peerPort = await anyFreePort(this.config.host)
        while (this.peerPort === this.port)
      }
      const forks = await Promise.allSettled(Array.from({ length: this.config.workers }, async () => await this.fork('initial')))
      const failed = forks.find((f): f is PromiseRejectedResult => f.status === 'rejected')
      if (failed === undefined) break
      if ((!pickPort && !pickPeerPort) || attempt >= 3) throw failed.reason
      this.log.warn({ event: 'listen-retry', port: this.port, attempt, err: (failed.reason as Error).message }, 'workers could not listen on the probed port; trying another')
      await Promise.all(this.liveWorkers().map(async (w) => await this.retire(w)))
    }
    this.starting = false
  }

  private liveWorkers (): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !this.leaving.has(w.id))
  }

  /** Forks a worker and resolves once it listens; rejects if it dies first. */
  private async fork (reason: Reason): Promise<Worker> {
    const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify({ ...this.config, port: this.port, peerPort: this.peerPort }) })
    // A message to a worker that is dying fails with EPIPE on the Worker object; without a
    // listener that would crash the supervisor. Its exit is handled in onExit.
    worker.on('error', (err: Error) => {
      this.log.warn({ event: 'worker-ipc-error', workerPid: worker.process.pid, err: err.message }, 'could not reach a worker')
    })
    await new Promise<void>((resolve, reject) => {
      // A worker with a peer listener listens twice (peer port first): it serves once the data port listens.
      const onListening = (address: { port: number }): void => {
        if (address.port !== this.port) return
        worker.off('listening', onListening)
        worker.off('exit', onExit)
        resolve()
      }
      const onExit = (code: number | null, signal: string | null): void => {
        worker.off('listening', onListening)
        reject(new Error(`worker ${worker.process.pid ?? '?'} exited (code ${String(code)}, signal ${String(signal)}) before listening`))
      }
      worker.on('listening', onListening)
      worker.once('exit', onExit)
    })
    if (reason !== 'initial') this.metrics.replaced.inc({ reason })
    this.broadcastWorkers()
    if (this.position >= 0 && worker.isConnected()) worker.send({ type: 'shardkv:replicated', position: this.position } satisfies SupervisorMessage)
    return worker
  }

  private broadcastWorkers (): void {
    const live = this.liveWorkers()
    this.metrics.workers.set(live.length)
    const pids = live.map((w) => w.process.pid).filter((p): p is number => p !== undefined)
    const msg: SupervisorMessage = { type: 'shardkv:workers', pids }
    for (const w of live) if (w.isConnected()) w.send(msg)
  }

  private onExit (worker: Worker, code: number | null, signal: string | null): void {
    // Whatever the reason, the live list changes now (not when a replacement listens).
    this.broadcastWorkers()
    if (this.leaving.delete(worker.id) || this.stopping || this.starting) return
    const delay = this.restartPolicy.onCrash(Date.now())
    this.log.error({ event: 'worker-crashed', workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died unexpectedly; replacing it')
    const replace = (): void => {
      if (this.stopping) return
      this.fork('crash').then((w) => {
        this.log.info({ event: 'worker-replaced', workerPid: w.process.pid, replaced: worker.process.pid }, 'replacement worker listening')
      }, (err: Error) => {
        // A replacement that dies on start is itself a crash: onExit schedules the next try.
        this.log.error({ event: 'worker-start-failed', err: err.message }, 'replacement worker failed to start')
      })
    }
    // Not unref'd: when every worker is dead, this timer is what keeps the node alive.
    if (delay === 0) replace()
    else setTimeout(replace, delay)
  }

  private onMessage (worker: Worker, msg: unknown): void {
    if (!isShardMessage(msg)) return
    const m = msg as WorkerMessage
    if (m.type === 'shardkv:committed') {
      this.hooks.committed()
    } else if (m.type === 'shardkv:map-installed') {
      this.hooks.mapInstalled()
    } else if (m.type === 'shardkv:metrics-request') {
      const reply = (text: string, error?: string): void => {
        if (worker.isConnected()) worker.send({ type: 'shardkv:metrics-reply', id: m.id, text, ...(error === undefined ? {} : { error }) } satisfies SupervisorMessage)
      }
      this.hooks.metricsText().then((text) => reply(text), (err: Error) => reply('', err.message))
    }
  }

  /** Asks a worker to drain and waits for it to exit; kills it after the timeout. */
  private async retire (worker: Worker): Promise<void> {
    this.leaving.add(worker.id)
    const exited = new Promise<void>((resolve) => {
      if (worker.isDead()) resolve()
      else worker.once('exit', () => resolve())
    })
    if (worker.isConnected()) worker.send({ type: 'shardkv:drain' } satisfies SupervisorMessage)
    const timer = setTimeout(() => {
      this.log.warn({ event: 'worker-drain-timeout', workerPid: worker.process.pid }, 'worker did not drain in time; killing it')
      worker.process.kill('SIGKILL')
    }, this.config.shutdownTimeoutMs)
    await exited
    clearTimeout(timer)
  }

  /** SIGUSR2: replace every worker, one at a time, keeping the node's capacity. */
  async rollingRestart (): Promise<void> {
    if (this.rolling || this.stopping) {
      this.log.warn({ event: 'rolling-restart-ignored' }, 'a rolling restart or shutdown is already running')
      return
    }
    this.rolling = true
    const old = this.liveWorkers()
    this.log.info({ event: 'rolling-restart-start', workers: old.length }, 'rolling restart')
    try {
      for (const worker of old) {
        if (this.stopping) break
        if (worker.isDead() || this.leaving.has(worker.id)) continue
        // Start the replacement first so that capacity never drops.
        const fresh = await this.fork('rolling-restart')
        await this.retire(worker)
        this.log.info({ event: 'worker-restarted', workerPid: fresh.process.pid, replaced: worker.process.pid }, 'worker restarted')
      }
      this.log.info({ event: 'rolling-restart-complete', workers: this.liveWorkers().length }, 'rolling restart complete')
    } catch (err) {
      this.log.error({ event: 'rolling-restart-failed', err: (err as Error).message }, 'rolling restart failed')
    } finally {
      this.rolling = false
    }
  }

  /** Drains every worker (in parallel) and waits for them to exit. */
  async stop (): Promise<void> {
    this.stopping = true
    await Promise.all(Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined).map(async (w) => await this.retire(w)))
  }
}

