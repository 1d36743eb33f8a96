import type { ShardHealth } from '../src/protocol/node-answers'
import { internalBodyLimit } from '../src/protocol/limits'
import type { FastifyInstance } from 'fastify'
import type { ShardConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { createApiServer, refuseOtherKvMethods } from '../src/http/server'
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
import { ReplicationGate } from './replication-gate'
import { ReplicaStore } from '../src/storage/replica-store'

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

  const app = createApiServer({ log, maxValueBytes: config.maxValueBytes, limits: config })
  instrument(app, metrics)
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
  registerDataApi(app, { store, migration, ownership, writes, metrics, replicated, isDraining: () => draining })
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
  registerInternalApi(app, {
    migration,
    ownership,
    log,
    batchBodyLimit,
    stats: () => store.stats(),
    adoptTerm: (term) => replica.adoptTerm(term),
    onInstalled: (epoch) => send({ type: 'shardkv:map-installed', epoch }),
    replicated
  })
  registerReplicationApi(app, { store, replica, ownership, log, batchBodyLimit })

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
      replicated: gate.replicated
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
        void drain(app, store, log, () => { draining = true })
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
    }
  })
  process.on('disconnect', () => {
    log.warn({ event: 'supervisor-gone' }, 'the supervisor is gone; exiting')
    process.exit(1)
  })

  await app.listen({ port: config.port, host: config.host })
  log.debug({ event: 'worker-listening' }, 'worker listening')
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
async function drain (app: FastifyInstance, store: KvStore, log: Logger, markDraining: () => void): Promise<void> {
  if (draining) return
  draining = true
  markDraining()
  // fastify.close stops accepting, closes idle keep-alive connections and waits for
  // in-flight requests; those answer with Connection: close (see data-api.ts).
  try {
    await app.close()
  } catch (err) {
    log.error({ err, event: 'drain-failed' }, 'closing the server failed')
  }
  store.close()
  process.exit(0)
}
