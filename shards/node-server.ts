import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import type { ShardConfig } from '../src/config/options'
import type { Logger } from '../src/log'
import type { KvStore, OpOutcome, StoreOp } from '../src/storage/store'
import type { ShardHealth } from '../src/protocol/node-answers'
import { internalBodyLimit } from '../src/protocol/limits'
import { HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'
import { createApiServer, loadListenerTls, refuseOtherKvMethods } from '../src/http/server'
import { ClientGuard, installClientGuard } from '../src/auth/client-guard'
import { TokenStore } from '../src/auth/tokens'
import { requirePeerSecret, type PeerCredentials } from '../src/auth/peer'
import { peerServerTls } from '../src/auth/tls'
import { GroupCommit } from '../src/storage/group-commit'
import { ReplicaStore } from '../src/storage/replica-store'
import type { MigrationStore } from '../src/storage/migration-store'
import { createWorkerMetrics, type ShardMetrics } from './metrics'
import type { OwnershipCache } from './ownership-cache'
import { ReplicationGate } from './replication-gate'
import { registerDataApi } from './data-api'
import { registerBatchApi } from './batch-api'
import { registerInternalApi } from './internal-api'
import { registerReplicationApi } from './replication-api'
import { registerDigestApi } from './digest-api'
import { registerFeedApi } from './watch-feed-api'
import { registerReadyz } from './readyz'
import type { WriteQueue } from './serving'

/**
 * The HTTP side of a shard node: the data listener (data API, batches, /healthz,
 * /metrics) and, with a peer port, the peer listener (internal API), over one KvStore.
 * It runs in a forked worker (worker.ts, which reaches its supervisor over IPC) or,
 * with `--workers 0`, in the supervisor's own process over the supervisor's store
 * (in-process.ts): the `NodeLink` is all that differs.
 */

/** What the serving code asks of the node's supervisor, wherever that runs. */
export interface NodeLink {
  /** The supervisor's pid: `/healthz` reports it as the node's `pid`. */
  nodePid: number
  /** A write committed at `seq` waits for its replication: ship now. */
  committed: (seq: number) => void
  /** A map was installed here: replication roles may have changed. */
  mapInstalled: (epoch: number) => void
  /** The whole node's Prometheus text (every worker's counters and the supervisor's). */
  metricsText: () => Promise<string>
}

/** What a node's supervisor does for whoever serves: ship now, a map was installed, the node's metrics. */
export interface SupervisorHooks {
  committed: () => void
  mapInstalled: () => void
  /** The node's metrics text; `served`: the in-process server's registry (else the workers' aggregate). */
  metricsText: (served?: Registry) => Promise<string>
}

/** How a supervisor serves its node: forked workers (worker-pool.ts) or in its own process (in-process.ts). */
export interface NodeServing {
  /** Starts serving; resolves once the data port listens, with the ports (port 0 resolved). */
  start: () => Promise<ListeningPorts>
  /** The position every replica of the ack set has durably applied: requests waiting on it go on. */
  replicated: (position: number) => void
  /** SIGHUP: read the tokens file again. */
  reloadTokens: () => void
  /** SIGUSR2: replace the serving processes one at a time. */
  rollingRestart: () => Promise<void>
  /** Drains: stops accepting and waits for (or, after --shutdown-timeout-ms, stops waiting for) requests in flight. */
  stop: () => Promise<void>
  /** Worker processes (0 in-process). */
  readonly workerCount: number
}

export interface NodeServerOptions {
  config: ShardConfig
  store: KvStore
  migration: MigrationStore
  ownership: OwnershipCache
  credentials: PeerCredentials
  log: Logger
  link: NodeLink
  /** Whether the metrics join prom-client's cluster aggregation (forked workers only). */
  clustered: boolean
}

export interface ListeningPorts {
  port: number
  /** -1 when the internal API is served on the data port. */
  peerPort: number
}

/** The log fields every line of a node carries: where the node stands in the installed map. */
export function ownershipLogFields (store: KvStore, ownership: OwnershipCache, group: string): Record<string, unknown> {
  if (!store.isOpen) return {}
  const o = ownership.get()
  return { group: o.group ?? group, role: o.role, epoch: o.epoch, term: o.term }
}

export class NodeServer {
  /** Where requests wait for their rows to be replicated; fed the replicated position. */
  readonly gate: ReplicationGate
  readonly guard: ClientGuard
  readonly metrics: ShardMetrics
  /** The processes serving this node's data port (`/healthz` workerPids). */
  servingPids: number[] = [process.pid]
  private readonly app: FastifyInstance
  /** The peer listener (internal API apart from the data port); undefined with `--peer-port -1`. */
  private readonly peerApp: FastifyInstance | undefined
  private readonly writes: WriteQueue
  private peerPort: number
  private draining = false
  /** Settles once both listeners closed (every caller of close waits for the same). */
  private closing: Promise<void> | undefined

  constructor (private readonly opts: NodeServerOptions) {
    const { config, credentials, log } = opts
    this.peerPort = config.peerPort
    this.gate = new ReplicationGate(config.ackTimeoutMs)
    this.metrics = createWorkerMetrics(opts.clustered)
    this.app = createApiServer({ log, maxValueBytes: config.maxValueBytes, limits: config, tls: loadListenerTls(config.tlsCert, config.tlsKey) })
    // Direct clients present tokens; routers present the cluster secret (and name their client).
    this.guard = new ClientGuard({
      tokens: config.tokensFile === '' ? undefined : new TokenStore(config.tokensFile, log),
      peer: credentials.secret
    })
    installClientGuard(this.app, this.guard)
    instrument(this.app, this.metrics)
    // With a peer port the internal API lives only there (the data port answers 404 for it).
    this.peerApp = config.peerPort >= 0
      ? createApiServer({ log, maxValueBytes: config.maxValueBytes, limits: config, ...(credentials.tls !== undefined ? { tls: peerServerTls(credentials.tls) } : {}) })
      : undefined
    if (this.peerApp !== undefined) instrument(this.peerApp, this.metrics)
    refuseOtherKvMethods(this.app)
    const { store } = opts
    this.writes = new GroupCommit<StoreOp, OpOutcome>({
      maxOps: config.groupCommitMaxOps,
      commit: (ops) => store.applyOps(ops),
      onCommit: (s) => {
        this.metrics.commitOps.observe(s.ops)
        if (!s.ok) this.metrics.commitFailures.inc()
      }
    })
    this.registerClientApi()
    this.registerPeerApi()
    this.registerHealth()
    this.app.get(METRICS_PATH, async (_request, reply) => {
      const text = await opts.link.metricsText()
      return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text)
    })
  }

  /** A primary with replicas answers for seq n only once n is replicated. */
  private readonly replicated = async (seq: number): Promise<void> => {
    if (this.opts.ownership.get().peers.length === 0 || seq <= this.gate.replicated) return
    this.opts.link.committed(seq)
    await this.gate.waitFor(seq)
  }

  private registerClientApi (): void {
    const { store, migration, ownership, config } = this.opts
    const { writes, metrics, replicated } = this
    registerDataApi(this.app, { store, migration, ownership, writes, metrics, replicated, isDraining: () => this.draining, feedRetentionMs: config.watchRetentionSeconds * 1000 })
    registerBatchApi(this.app, {
      store,
      ownership,
      writes,
      metrics,
      replicated,
      maxBatchOps: config.maxBatchOps,
      maxBatchBytes: config.maxBatchBytes,
      maxValueBytes: config.maxValueBytes
    })
  }

  /**
   * One encapsulated scope holds every internal route, so the secret check runs for
   * them alone and never on the data path.
   */
  private registerPeerApi (): void {
    const { store, migration, ownership, log, credentials, link, config } = this.opts
    const replica = new ReplicaStore(store)
    const senderChecks = credentials.secret !== undefined
    // Migration imports and replication shipments: bounded by policy (src/protocol/limits.ts).
    const batchBodyLimit = internalBodyLimit(config.maxValueBytes)
    void (this.peerApp ?? this.app).register(async (scope) => {
      requirePeerSecret(scope, credentials.secret)
      registerInternalApi(scope, {
        migration,
        ownership,
        log,
        batchBodyLimit,
        senderChecks,
        stats: () => store.stats(),
        adoptTerm: (term) => replica.adoptTerm(term),
        onInstalled: (epoch) => link.mapInstalled(epoch),
        replicated: this.replicated
      })
      registerReplicationApi(scope, { store, replica, ownership, migration, log, batchBodyLimit, senderChecks })
      registerDigestApi(scope, { store, ownership })
      registerFeedApi(scope, { store, ownership, durable: () => this.gate.replicated })
    })
  }

  private registerHealth (): void {
    const { store, ownership, config, credentials, link } = this.opts
    this.app.get(HEALTH_PATH, (_request, reply) => {
      const o = ownership.get()
      const health: ShardHealth = {
        status: this.draining ? 'draining' : 'ok',
        service: 'shard',
        nodeId: store.nodeId,
        group: o.group ?? config.group,
        pid: link.nodePid,
        workerPid: process.pid,
        workerPids: this.servingPids,
        position: store.position(),
        epoch: store.installedEpoch(),
        term: o.term,
        dataTerm: store.currentTerm(),
        role: o.role,
        replicated: this.gate.replicated,
        // What the coordinator derives this node's peer URL from (peerUrlOf in src/membership/map.ts).
        ...(this.peerPort >= 0 ? { peerPort: this.peerPort } : {}),
        peerTls: this.peerApp !== undefined && credentials.tls !== undefined
      }
      void reply.send(health)
    })
    registerReadyz(this.app, () => this.opts.migration.installedMap())
  }

  /**
   * The peer listener first: a supervisor of forked workers counts one as started when
   * its data port listens. Port 0 is the OS's pick here (an in-process node; workers
   * are handed concrete ports), so the ports come back from the sockets.
   */
  async listen (): Promise<ListeningPorts> {
    const { port, host } = this.opts.config
    if (this.peerApp !== undefined) {
      await this.peerApp.listen({ port: this.peerPort, host })
      this.peerPort = (this.peerApp.server.address() as AddressInfo).port
    }
    await this.app.listen({ port, host })
    return { port: (this.app.server.address() as AddressInfo).port, peerPort: this.peerPort }
  }

  /**
   * Drains: stops accepting, closes idle kept-alive connections and waits for the
   * requests in flight, which answer with Connection: close (see data-api.ts).
   */
  async close (): Promise<void> {
    this.draining = true
    this.closing ??= Promise.all([this.app, ...(this.peerApp !== undefined ? [this.peerApp] : [])].map(async (app) => await app.close())).then(
      () => undefined,
      (err: Error) => { this.opts.log.error({ err, event: 'drain-failed' }, 'closing the server failed') }
    )
    await this.closing
  }
}

function instrument (app: FastifyInstance, metrics: ShardMetrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    metrics.requests.inc({ method: request.method, status: String(reply.statusCode) })
    metrics.duration.observe({ method: request.method }, reply.elapsedTime / 1000)
    done()
  })
}
