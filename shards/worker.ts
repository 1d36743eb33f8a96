import type { ShardHealth } from '../src/protocol/node-answers'
import { internalBodyLimit } from '../src/protocol/limits'
import type { FastifyInstance } from 'fastify'
import type { ShardConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { createApiServer, loadListenerTls, refuseOtherKvMethods } from '../src/http/server'
import { ClientGuard, installClientGuard } from '../src/auth/client-guard'
import { TokenStore } from '../src/auth/tokens'
import { HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'
import { registerDataApi } from './data-api'
import { registerBatchApi } from './batch-api'
import { GroupCommit } from '../src/storage/group-commit'
import type { OpOutcome, StoreOp } from '../src/storage/store'
import { createWorkerMetrics, type ShardMetrics } from './metrics'
import { isShardMessage, type SupervisorMessage, type WorkerMessage } from './ipc'
import { databasePath } from './paths'
import { MigrationStore } from '../src/storage/migration-store'
import { OwnershipCache } from './ownership-cache'
import { registerInternalApi } from './internal-api'
import { registerReplicationApi } from './replication-api'
import { registerDigestApi } from './digest-api'
import { registerFeedApi } from './watch-feed-api'
import { ReplicationGate } from './replication-gate'
import { ReplicaStore } from '../src/storage/replica-store'
import { loadPeerCredentials, requirePeerSecret, type PeerCredentials } from '../src/auth/peer'
import { peerServerTls } from '../src/auth/tls'

/**
 * One worker process of a shard node: a fastify server on the node's shared port
 * (the cluster module hands it connections round-robin) over its own connection to
 * the node's SQLite file. It lives until the supervisor tells it to drain, or until
 * the supervisor disappears (then it exits at once: an orphan must not keep
 * serving writes nobody supervises, nor hold the port against a restart).
 */
export async function runWorker (config: ShardConfig): Promise<void> {
  const store = new KvStore({ path: databasePath(config.dataDir), synchronous: config.synchronous as 'FULL', busyTimeoutMs: config.busyTimeoutMs })
  let view: (() => Record<string, unknown>) | undefined
  const log = createLogger({ component: 'shard-worker', nodeId: store.nodeId }, config.logLevel, () => view?.() ?? {})
  const metrics = createWorkerMetrics()
  let draining = false
  let workerPids: number[] = [process.pid]
  const pendingMetrics = new Map<number, (text: string, error?: string) => void>()
  let nextMetricsId = 1

  // Read here too (not handed over by the supervisor): the secret never travels in env or IPC.
  const credentials = loadPeerCredentials(config)
  const app = createApiServer({ log, maxValueBytes: config.maxValueBytes, limits: config, tls: loadListenerTls(config.tlsCert, config.tlsKey) })
  // Direct clients present tokens; routers present the cluster secret (and name their client).
  const guard = new ClientGuard({
    tokens: config.tokensFile === '' ? undefined : new TokenStore(config.tokensFile, log),
    peer: credentials.secret
  })
  installClientGuard(app, guard)
  instrument(app, metrics)
  // With a peer port the internal API lives only there (the data port answers 404 for it).
  const peerApp = config.peerPort >= 0 ? peerServer(config, log, credentials) : undefined
  if (peerApp !== undefined) instrument(peerApp, metrics)
  refuseOtherKvMethods(app)
  const migration = new MigrationStore(store)
  const ownership = new OwnershipCache(store, migration)
  view = () => {
    if (!store.isOpen) return {}
    const o = ownership.get()
    return { group: o.group ?? config.group, role: o.role, epoch: o.epoch, term: o.term }
  }
  const replica = new ReplicaStore(store)
  const gate = new ReplicationGate(config.ackTimeoutMs)
  // Migration imports and replication shipments: bounded by policy (src/protocol/limits.ts).
  const batchBodyLimit = internalBodyLimit(config.maxValueBytes)
  // A primary with replicas answers for seq n only once the supervisor reports n replicated.
  const replicated = async (seq: number): Promise<void> => {
    if (ownership.get().peers.length === 0 || seq <= gate.replicated) return
    send({ type: 'shardkv:committed', seq })
    await gate.waitFor(seq)
  }
  const writes = new GroupCommit<StoreOp, OpOutcome>({
    maxOps: config.groupCommitMaxOps,
    commit: (ops) => store.applyOps(ops),
    onCommit: (s) => {
      metrics.commitOps.observe(s.ops)
      if (!s.ok) metrics.commitFailures.inc()
    }
  })
  registerDataApi(app, { store, migration, ownership, writes, metrics, replicated, isDraining: () => draining, feedRetentionMs: config.watchRetentionSeconds * 1000 })
  registerBatchApi(app, {
    store,
    ownership,
    writes,
    metrics,
    replicated,
    maxBatchOps: config.maxBatchOps,
    maxBatchBytes: config.maxBatchBytes,
    maxValueBytes: config.maxValueBytes
  })
  // One encapsulated scope holds every internal route, so the secret check runs for
  // them alone and never on the data path.
  void (peerApp ?? app).register(async (scope) => {
    requirePeerSecret(scope, credentials.secret)
    registerInternalApi(scope, {
      migration,
      ownership,
      log,
      batchBodyLimit,
      senderChecks: credentials.secret !== undefined,
      stats: () => store.stats(),
      adoptTerm: (term) => replica.adoptTerm(term),
      onInstalled: (epoch) => send({ type: 'shardkv:map-installed', epoch }),
      replicated
    })
    registerReplicationApi(scope, { store, replica, ownership, migration, log, batchBodyLimit, senderChecks: credentials.secret !== undefined })
    registerDigestApi(scope, { store, ownership })
    registerFeedApi(scope, { store, ownership, durable: () => gate.replicated })
  })

  app.get(HEALTH_PATH, (_request, reply) => {
    const health: ShardHealth = {
      status: draining ? 'draining' : 'ok',
      service: 'shard',
      nodeId: store.nodeId,
      group: ownership.get().group ?? config.group,
      pid: process.ppid,
      workerPid: process.pid,
      workerPids,
      position: store.position(),
      epoch: store.installedEpoch(),
      term: ownership.get().term,
      dataTerm: store.currentTerm(),
      role: ownership.get().role,
      replicated: gate.replicated,
      // What the coordinator derives this node's peer URL from (peerUrlOf in src/membership/map.ts).
      ...(config.peerPort >= 0 ? { peerPort: config.peerPort } : {}),
      peerTls: peerApp !== undefined && credentials.tls !== undefined
    }
    void reply.send(health)
  })

  app.get(METRICS_PATH, async (_request, reply) => {
    const id = nextMetricsId++
    const text = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { pendingMetrics.delete(id); reject(new Error('the supervisor did not answer')) }, 6000)
      pendingMetrics.set(id, (t, error) => {
        clearTimeout(timer)
        pendingMetrics.delete(id)
        if (error !== undefined) reject(new Error(error))
        else resolve(t)
      })
      send({ type: 'shardkv:metrics-request', id })
    })
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text)
  })

  process.on('message', (msg: unknown) => {
    if (!isShardMessage(msg)) return
    const m = msg as SupervisorMessage
    switch (m.type) {
      case 'shardkv:drain':
        void drain([app, ...(peerApp !== undefined ? [peerApp] : [])], store, log, () => { draining = true })
        break
      case 'shardkv:workers':
        workerPids = m.pids
        break
      case 'shardkv:replicated':
        gate.update(m.position)
        break
      case 'shardkv:metrics-reply':
        pendingMetrics.get(m.id)?.(m.text, m.error)
        break
      case 'shardkv:reload-tokens':
        guard.reload()
        break
    }
  })
  // The supervisor relays its SIGHUP; one sent to the whole process group lands here too.
  process.on('SIGHUP', () => { guard.reload() })
  process.on('disconnect', () => {
    log.warn({ event: 'supervisor-gone' }, 'the supervisor is gone; exiting')
    process.exit(1)
  })

  // The peer listener first: the supervisor counts a worker as started when the data port listens.
  if (peerApp !== undefined) await peerApp.listen({ port: config.peerPort, host: config.host })
  await app.listen({ port: config.port, host: config.host })
  log.debug({ event: 'worker-listening' }, 'worker listening')
}

/** The peer listener: the same HTTP edge as the data port (limits, errors), HTTPS with client certificates under peer TLS. */
function peerServer (config: ShardConfig, log: Logger, credentials: PeerCredentials): FastifyInstance {
  return createApiServer({ log, maxValueBytes: config.maxValueBytes, limits: config, ...(credentials.tls !== undefined ? { tls: peerServerTls(credentials.tls) } : {}) })
}

function send (msg: WorkerMessage): void {
  if (process.send !== undefined && process.connected) process.send(msg)
}

function instrument (app: FastifyInstance, metrics: ShardMetrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    metrics.requests.inc({ method: request.method, status: String(reply.statusCode) })
    metrics.duration.observe({ method: request.method }, reply.elapsedTime / 1000)
    done()
  })
}

let draining = false
async function drain (apps: FastifyInstance[], store: KvStore, log: Logger, markDraining: () => void): Promise<void> {
  if (draining) return
  draining = true
  markDraining()
  // fastify.close stops accepting, closes idle keep-alive connections and waits for
  // in-flight requests; those answer with Connection: close (see data-api.ts).
  try {
    await Promise.all(apps.map(async (app) => await app.close()))
  } catch (err) {
    log.error({ err, event: 'drain-failed' }, 'closing the server failed')
  }
  store.close()
  process.exit(0)
}
