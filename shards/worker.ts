import type { FastifyInstance } from 'fastify'
import type { ShardConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { createApiServer, refuseOtherKvMethods } from '../src/http/server'
import { HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'
import { registerDataApi } from './data-api'
import { createWorkerMetrics, type ShardMetrics } from './metrics'
import { isShardMessage, type SupervisorMessage, type WorkerMessage } from './ipc'
import { databasePath } from './paths'
import { MigrationStore } from '../src/storage/migration-store'
import { OwnershipCache } from './ownership-cache'
import { registerInternalApi } from './internal-api'

/**
 * One worker process of a shard node: a fastify server on the node's shared port
 * (the cluster module hands it connections round-robin) over its own connection to
 * the node's SQLite file. It lives until the supervisor tells it to drain, or until
 * the supervisor disappears (then it exits at once: an orphan must not keep
 * serving writes nobody supervises, nor hold the port against a restart).
 */
export async function runWorker (config: ShardConfig): Promise<void> {
  const store = new KvStore({ path: databasePath(config.dataDir), synchronous: config.synchronous as 'FULL', busyTimeoutMs: config.busyTimeoutMs })
  const log = createLogger({ component: 'shard-worker', nodeId: store.nodeId, group: config.group, role: 'primary' }, config.logLevel)
  const metrics = createWorkerMetrics()
  let draining = false
  let workerPids: number[] = [process.pid]
  const pendingMetrics = new Map<number, (text: string, error?: string) => void>()
  let nextMetricsId = 1

  const app = createApiServer({ log, maxValueBytes: config.maxValueBytes })
  instrument(app, metrics)
  refuseOtherKvMethods(app)
  const migration = new MigrationStore(store)
  const ownership = new OwnershipCache(store, migration)
  registerDataApi(app, { store, migration, ownership, metrics, isDraining: () => draining })
  registerInternalApi(app, { migration, ownership, log, batchBodyLimit: Math.max(64 * 1024 * 1024, config.maxValueBytes * 4), stats: () => store.stats() })

  app.get(HEALTH_PATH, (_request, reply) => {
    void reply.send({
      status: draining ? 'draining' : 'ok',
      role: 'shard',
      nodeId: store.nodeId,
      group: ownership.get().group ?? config.group,
      pid: process.ppid,
      workerPid: process.pid,
      workerPids,
      position: store.position(),
      epoch: store.installedEpoch(),
      term: store.currentTerm()
    })
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
