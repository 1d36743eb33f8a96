import { ConfigError, type ShardConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { parseRegistry } from '../src/registry/registry-url'
import { EtcdGateway } from '../src/registry/etcd/gateway'
import { nodeEntryKey, Registration } from '../src/registry/etcd/directory'
import { normalizeNodeUrl } from '../src/membership/map'
import type { WireNodeRegistration } from '../src/protocol/wire'
import { createSupervisorMetrics, nodeMetricsText, type SupervisorMetrics } from './metrics'
import { databasePath } from './paths'
import { MigrationStore } from '../src/storage/migration-store'
import { OwnershipCache } from './ownership-cache'
import { Shipper } from './shipper'
import { RequestExpiry } from './request-expiry'
import { purgeAllForeign } from './internal-api'
import type { PeerCredentials } from '../src/auth/peer'
import { ownershipLogFields, type NodeServing, type SupervisorHooks } from './node-server'
import { WorkerPool } from './worker-pool'
import { InProcessServing } from './in-process'

/**
 * The supervisor of a shard node, its first process. It owns the node's lifecycle: it
 * creates or checks the database (schema, node id) before anything serves from it,
 * ships the change log to the replicas, forgets old request ids, registers the node,
 * and serves the data API either through forked workers (`--workers N`, worker-pool.ts)
 * or itself (`--workers 0`, in-process.ts). It drains on SIGTERM, relays SIGHUP (tokens)
 * and hands SIGUSR2 (rolling restart) to the workers.
 */
export class Supervisor {
  private readonly config: ShardConfig
  private readonly store: KvStore
  private readonly log: Logger
  private readonly metrics: SupervisorMetrics
  private port: number
  /** The peer listener's port (-1: internal endpoints on the data port); resolved once serving. */
  private peerPort: number
  /** Leaves the registry (set when the node registered itself). */
  private deregister: (() => Promise<void>) | undefined
  private shuttingDown = false
  private readonly ownership: OwnershipCache
  private readonly migration: MigrationStore
  private readonly shipper: Shipper
  private readonly serving: NodeServing
  private expiry: RequestExpiry | undefined
  /** Whether the peer listener wants mutual TLS (reported in the listening line). */
  private readonly peerTls: boolean

  constructor (config: ShardConfig, credentials: PeerCredentials) {
    this.config = config
    this.peerTls = credentials.tls !== undefined
    this.store = new KvStore({ path: databasePath(config.dataDir), synchronous: config.synchronous as 'FULL', busyTimeoutMs: config.busyTimeoutMs, nodeId: config.nodeId })
    this.port = config.port
    this.peerPort = config.peerPort
    this.migration = new MigrationStore(this.store)
    this.ownership = new OwnershipCache(this.store, this.migration)
    this.log = createLogger({ component: 'shard', nodeId: this.store.nodeId }, config.logLevel, () => ownershipLogFields(this.store, this.ownership, config.group))
    const clustered = config.workers > 0
    const feed = { retentionSeconds: config.watchRetentionSeconds, stats: () => this.store.isOpen ? this.store.feed.stats() : undefined }
    this.metrics = createSupervisorMetrics({ nodeId: this.store.nodeId, group: config.group }, () => this.store.position(), clustered, feed)
    this.shipper = new Shipper({
      store: this.store,
      view: () => ({ ownership: this.ownership.get(), coordinator: this.ownership.coordinator(), self: this.ownership.self() }),
      credentials,
      log: this.log,
      broadcast: (position) => this.serving.replicated(position),
      batchRows: config.replicationBatch,
      window: config.replicationWindow,
      replicaTimeoutMs: config.replicaTimeoutMs,
      registry: this.metrics.registry
    })
    const hooks: SupervisorHooks = {
      committed: () => this.shipper.kick(),
      mapInstalled: () => {
        this.ownership.invalidate()
        this.shipper.refresh()
      },
      metricsText: async (served) => await nodeMetricsText(this.metrics, served)
    }
    this.serving = clustered
      ? new WorkerPool(config, this.log, this.metrics, hooks)
      : new InProcessServing({ config, store: this.store, migration: this.migration, ownership: this.ownership, credentials, log: this.log }, hooks)
  }

  async start (): Promise<void> {
    // A node that was down may have missed a rebalance's purge: rows its group no longer
    // owns must not survive to be served (or to shadow newer copies) after a promotion.
    const settled = this.ownership.get()
    if (!settled.handoverPending) {
      const purged = purgeAllForeign(this.migration, settled)
      if (purged > 0) this.log.info({ event: 'foreign-rows-purged', deleted: purged }, 'purged rows this group no longer owns')
    }
    // The floor is set before anything serves: an id older than the window is refused from the start.
    this.expiry = new RequestExpiry({ store: this.store, log: this.log, windowMs: this.config.requestIdWindowMs, maxRecords: this.config.requestIdMax })
    const ports = await this.serving.start()
    this.port = ports.port
    this.peerPort = ports.peerPort
    this.shipper.refresh()
    // Installs notify us through the servers; this also catches one made while we were busy.
    setInterval(() => this.shipper.refresh(), 1000).unref()
    process.on('SIGUSR2', () => { if (!this.shuttingDown) void this.serving.rollingRestart() })
    // The servers hold the tokens (they authenticate); the supervisor only relays.
    process.on('SIGHUP', () => {
      this.log.info({ event: 'reload-tokens' }, 'SIGHUP: re-reading the tokens file')
      this.serving.reloadTokens()
    })
    process.on('SIGTERM', () => { void this.shutdown('SIGTERM') })
    process.on('SIGINT', () => { void this.shutdown('SIGINT') })
    const url = `${this.config.tlsCert === '' ? 'http' : 'https'}://${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${this.port}`
    const peer = this.peerPort >= 0 ? { peerPort: this.peerPort, peerTls: this.peerTls } : {}
    this.log.info({ event: 'listening', service: 'shard', url, ...peer, workers: this.serving.workerCount, dataDir: this.config.dataDir }, `shard node ${this.store.nodeId} listening on ${url}`)
    this.register(url)
  }

  /** With an etcd registry: the node's entry under a lease, for as long as it runs. */
  private register (listening: string): void {
    const spec = parseRegistry(this.config.registry)
    if (spec.kind !== 'etcd') return
    const gateway = new EtcdGateway({ endpoints: spec.endpoints })
    // Others reach the node where it advertises itself (its peer listener on that host too).
    let url = listening
    try {
      if (this.config.advertiseUrl !== '') url = normalizeNodeUrl(this.config.advertiseUrl)
    } catch (err) {
      throw new ConfigError(`--advertise-url: ${(err as Error).message}`)
    }
    const host = new URL(url).host.replace(/:\d+$/, '')
    const entry: WireNodeRegistration = {
      nodeId: this.store.nodeId,
      group: this.config.group,
      url,
      ...(this.peerPort >= 0 ? { peer: `${this.peerTls ? 'https' : 'http'}://${host}:${this.peerPort}` } : {}),
      pid: process.pid,
      startedAt: new Date().toISOString()
    }
    const registration = new Registration(gateway, nodeEntryKey(this.config.registryCluster, entry.nodeId), entry, this.config.registryTtlSeconds, {
      onRegistered: (lease) => this.log.info({ event: 'registered', registry: spec.endpoints, lease }, 'registered in etcd'),
      onLost: (why) => this.log.warn({ event: 'registration-lost', why }, 'not registered in etcd; trying again')
    })
    this.deregister = async () => {
      await registration.close()
      await gateway.close()
    }
  }

  async shutdown (signal: string): Promise<void> {
    if (this.shuttingDown) return
    this.shuttingDown = true
    this.log.info({ event: 'shutdown-start', signal }, 'draining')
    // Out of the registry first: whoever watches it sees the node leave now, not after its TTL.
    await this.deregister?.().catch((err: Error) => this.log.warn({ event: 'deregister-failed', err: err.message }, 'could not leave the registry (the entry expires with its lease)'))
    await this.serving.stop()
    await this.shipper.stop()
    this.expiry?.stop()
    this.log.info({ event: 'stopped' }, 'shard node stopped')
    this.store.close()
    process.exit(0)
  }
}
