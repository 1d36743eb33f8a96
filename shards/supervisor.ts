import cluster, { type Worker } from 'node:cluster'
import { createServer } from 'node:net'
import type { ShardConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { parseRegistry } from '../src/registry/registry-url'
import { EtcdGateway } from '../src/registry/etcd/gateway'
import { NodeRegistration } from '../src/registry/etcd/node-directory'
import type { WireNodeRegistration } from '../src/protocol/wire'
import { createSupervisorMetrics, nodeMetricsText, type SupervisorMetrics } from './metrics'
import { RestartPolicy } from './restart-policy'
import { isShardMessage, WORKER_CONFIG_ENV, type SupervisorMessage, type WorkerMessage } from './ipc'
import { databasePath } from './paths'
import { MigrationStore } from '../src/storage/migration-store'
import { OwnershipCache } from './ownership-cache'
import { Shipper } from './shipper'
import { RequestExpiry } from './request-expiry'
import { purgeAllForeign } from './internal-api'
import type { PeerCredentials } from '../src/auth/peer'

type Reason = 'initial' | 'crash' | 'rolling-restart'

/**
 * The cluster primary of a shard node. It owns the node's lifecycle: it creates
 * or checks the database (schema, node id) before any worker opens it, forks the
 * workers, replaces one that dies, restarts them one at a time on SIGUSR2 and drains
 * them all on SIGTERM. It serves no requests itself.
 */
export class Supervisor {
  private readonly config: ShardConfig
  private readonly store: KvStore
  private readonly log: Logger
  private readonly metrics: SupervisorMetrics
  private readonly restartPolicy = new RestartPolicy()
  /** Workers we asked to exit: their exit is not a crash. */
  private readonly leaving = new Set<number>()
  private port: number
  /** The peer listener's port (-1: internal endpoints on the data port); resolved like `port`. */
  private peerPort: number
  /** Leaves the registry (set when the node registered itself). */
  private deregister: (() => Promise<void>) | undefined
  private shuttingDown = false
  /** Until the first workers listen, a worker that dies is not replaced: start() decides. */
  private starting = true
  private rolling = false
  private readonly ownership: OwnershipCache
  private readonly migration: MigrationStore
  private readonly shipper: Shipper
  private expiry: RequestExpiry | undefined
  /** Last replicated position broadcast, handed to every new worker. */
  private replicated = -1
  /** Whether the peer listener wants mutual TLS (reported in the listening line). */
  private readonly peerTls: boolean

  constructor (config: ShardConfig, credentials: PeerCredentials) {
    this.config = config
    this.peerTls = credentials.tls !== undefined
    this.store = new KvStore({ path: databasePath(config.dataDir), synchronous: config.synchronous as 'FULL', busyTimeoutMs: config.busyTimeoutMs, nodeId: config.nodeId })
    this.port = config.port
    this.peerPort = config.peerPort
    this.log = createLogger({ component: 'shard', nodeId: this.store.nodeId }, config.logLevel, () => {
      if (this.ownership === undefined || !this.store.isOpen) return {}
      const o = this.ownership.get()
      return { group: o.group ?? config.group, role: o.role, epoch: o.epoch, term: o.term }
    })
    this.metrics = createSupervisorMetrics({ nodeId: this.store.nodeId, group: config.group }, () => this.store.position())
    this.migration = new MigrationStore(this.store)
    this.ownership = new OwnershipCache(this.store, this.migration)
    this.shipper = new Shipper({
      store: this.store,
      view: () => ({ ownership: this.ownership.get(), coordinator: this.ownership.coordinator(), self: this.ownership.self() }),
      credentials,
      log: this.log,
      broadcast: (position) => { this.replicated = position; this.send({ type: 'shardkv:replicated', position }) },
      batchRows: config.replicationBatch,
      replicaTimeoutMs: config.replicaTimeoutMs
    })
  }

  private send (msg: SupervisorMessage): void {
    for (const w of this.liveWorkers()) if (w.isConnected()) w.send(msg)
  }

  async start (): Promise<void> {
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal))
    cluster.on('message', (worker, msg: unknown) => this.onMessage(worker, msg))
    // A node that was down may have missed a rebalance's purge: rows its group no longer
    // owns must not survive to be served (or to shadow newer copies) after a promotion.
    const settled = this.ownership.get()
    if (!settled.handoverPending) {
      const purged = purgeAllForeign(this.migration, settled)
      if (purged > 0) this.log.info({ event: 'foreign-rows-purged', deleted: purged }, 'purged rows this group no longer owns')
    }
    // The floor is set before any worker serves: an id older than the window is refused from the start.
    this.expiry = new RequestExpiry({ store: this.store, log: this.log, windowMs: this.config.requestIdWindowMs, maxRecords: this.config.requestIdMax })
    await this.forkInitialWorkers()
    this.shipper.refresh()
    // Installs notify us through the workers; this also catches one made while we were busy.
    setInterval(() => this.shipper.refresh(), 1000).unref()
    process.on('SIGUSR2', () => { void this.rollingRestart() })
    // The workers hold the tokens (they authenticate); the supervisor only relays.
    process.on('SIGHUP', () => {
      this.log.info({ event: 'reload-tokens' }, 'SIGHUP: workers re-read the tokens file')
      this.send({ type: 'shardkv:reload-tokens' })
    })
    process.on('SIGTERM', () => { void this.shutdown('SIGTERM') })
    process.on('SIGINT', () => { void this.shutdown('SIGINT') })
    const url = `${this.config.tlsCert === '' ? 'http' : 'https'}://${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${this.port}`
    const peer = this.peerPort >= 0 ? { peerPort: this.peerPort, peerTls: this.peerTls } : {}
    this.log.info({ event: 'listening', service: 'shard', url, ...peer, workers: this.liveWorkers().length, dataDir: this.config.dataDir }, `shard node ${this.store.nodeId} listening on ${url}`)
    this.register(url)
  }

  /** With an etcd registry: the node's entry under a lease, for as long as it runs. */
  private register (url: string): void {
    const spec = parseRegistry(this.config.registry)
    if (spec.kind !== 'etcd') return
    const gateway = new EtcdGateway({ endpoints: spec.endpoints })
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host
    const entry: WireNodeRegistration = {
      nodeId: this.store.nodeId,
      group: this.config.group,
      url,
      ...(this.peerPort >= 0 ? { peer: `${this.peerTls ? 'https' : 'http'}://${host}:${this.peerPort}` } : {}),
      pid: process.pid,
      startedAt: new Date().toISOString()
    }
    const registration = new NodeRegistration(gateway, this.config.registryCluster, entry, this.config.registryTtlSeconds, {
      onRegistered: (lease) => this.log.info({ event: 'registered', registry: spec.endpoints, lease }, 'registered in etcd'),
      onLost: (why) => this.log.warn({ event: 'registration-lost', why }, 'not registered in etcd; trying again')
    })
    this.deregister = async () => {
      await registration.close()
      await gateway.close()
    }
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
      if (pickPort) this.port = await freePort(this.config.host)
      // A closed probe's port may come back at once: the two listeners need two ports.
      if (pickPeerPort) {
        do this.peerPort = await freePort(this.config.host)
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
    if (this.replicated >= 0 && worker.isConnected()) worker.send({ type: 'shardkv:replicated', position: this.replicated } satisfies SupervisorMessage)
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
    if (this.leaving.delete(worker.id) || this.shuttingDown || this.starting) return
    const delay = this.restartPolicy.onCrash(Date.now())
    this.log.error({ event: 'worker-crashed', workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died unexpectedly; replacing it')
    const replace = (): void => {
      if (this.shuttingDown) return
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
      this.shipper.kick()
      return
    }
    if (m.type === 'shardkv:map-installed') {
      this.ownership.invalidate()
      this.shipper.refresh()
      return
    }
    if (m.type === 'shardkv:metrics-request') {
      nodeMetricsText(this.metrics).then(
        (text) => { if (worker.isConnected()) worker.send({ type: 'shardkv:metrics-reply', id: m.id, text } satisfies SupervisorMessage) },
        (err: Error) => { if (worker.isConnected()) worker.send({ type: 'shardkv:metrics-reply', id: m.id, text: '', error: err.message } satisfies SupervisorMessage) }
      )
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
    if (this.rolling || this.shuttingDown) {
      this.log.warn({ event: 'rolling-restart-ignored' }, 'a rolling restart or shutdown is already running')
      return
    }
    this.rolling = true
    const old = this.liveWorkers()
    this.log.info({ event: 'rolling-restart-start', workers: old.length }, 'rolling restart')
    try {
      for (const worker of old) {
        if (this.shuttingDown) break
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

  async shutdown (signal: string): Promise<void> {
    if (this.shuttingDown) return
    this.shuttingDown = true
    this.log.info({ event: 'shutdown-start', signal }, 'draining workers')
    // Out of the registry first: whoever watches it sees the node leave now, not after its TTL.
    await this.deregister?.().catch((err: Error) => this.log.warn({ event: 'deregister-failed', err: err.message }, 'could not leave the registry (the entry expires with its lease)'))
    await Promise.all(Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined).map(async (w) => await this.retire(w)))
    await this.shipper.stop()
    this.expiry?.stop()
    this.log.info({ event: 'stopped' }, 'shard node stopped')
    this.store.close()
    process.exit(0)
  }
}

async function freePort (host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('could not determine a free port'))
      })
    })
  })
}
