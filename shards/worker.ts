import type { ShardConfig } from '../src/config/options'
import { createLogger } from '../src/log'
import { KvStore } from '../src/storage/store'
import { MigrationStore } from '../src/storage/migration-store'
import { loadPeerCredentials } from '../src/auth/peer'
import { isShardMessage, type SupervisorMessage, type WorkerMessage } from './ipc'
import { databasePath } from './paths'
import { OwnershipCache } from './ownership-cache'
import { NodeServer, ownershipLogFields, type NodeLink } from './node-server'

/**
 * One worker process of a shard node (`--workers N`, N ≥ 1): a NodeServer on the
 * node's shared ports (the cluster module hands it connections round-robin) over its
 * own connection to the node's SQLite file, reaching its supervisor over IPC. It lives
 * until the supervisor tells it to drain, or until the supervisor disappears (then it
 * exits at once: an orphan must not keep serving writes nobody supervises, nor hold
 * the port against a restart).
 */
export async function runWorker (config: ShardConfig): Promise<void> {
  const store = new KvStore({ path: databasePath(config.dataDir), synchronous: config.synchronous as 'FULL', busyTimeoutMs: config.busyTimeoutMs })
  const migration = new MigrationStore(store)
  const ownership = new OwnershipCache(store, migration)
  const log = createLogger({ component: 'shard-worker', nodeId: store.nodeId }, config.logLevel, () => ownershipLogFields(store, ownership, config.group))
  const metrics = new MetricsRequests()
  const link: NodeLink = {
    nodePid: process.ppid,
    committed: (seq) => send({ type: 'shardkv:committed', seq }),
    mapInstalled: (epoch) => send({ type: 'shardkv:map-installed', epoch }),
    metricsText: async () => await metrics.ask()
  }
  // Read here too (not handed over by the supervisor): the secret never travels in env or IPC.
  const server = new NodeServer({ config, store, migration, ownership, credentials: loadPeerCredentials(config), log, link, clustered: true })

  process.on('message', (msg: unknown) => {
    if (!isShardMessage(msg)) return
    const m = msg as SupervisorMessage
    switch (m.type) {
      case 'shardkv:drain':
        void server.close().then(() => {
          store.close()
          process.exit(0)
        })
        break
      case 'shardkv:workers':
        server.servingPids = m.pids
        break
      case 'shardkv:replicated':
        server.gate.update(m.position)
        break
      case 'shardkv:metrics-reply':
        metrics.answer(m.id, m.text, m.error)
        break
      case 'shardkv:reload-tokens':
        server.guard.reload()
        break
    }
  })
  // The supervisor relays its SIGHUP; one sent to the whole process group lands here too.
  process.on('SIGHUP', () => { server.guard.reload() })
  process.on('disconnect', () => {
    log.warn({ event: 'supervisor-gone' }, 'the supervisor is gone; exiting')
    process.exit(1)
  })
  await server.listen()
  log.debug({ event: 'worker-listening' }, 'worker listening')
}

function send (msg: WorkerMessage): void {
  if (process.send !== undefined && process.connected) process.send(msg)
}

/** The node's metrics text, asked of the supervisor (which aggregates every worker). */
class MetricsRequests {
  private readonly pending = new Map<number, (text: string, error?: string) => void>()
  private nextId = 1

  async ask (): Promise<string> {
    const id = this.nextId++
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error('the supervisor did not answer')) }, 6000)
      this.pending.set(id, (text, error) => {
        clearTimeout(timer)
        this.pending.delete(id)
        if (error !== undefined) reject(new Error(error))
        else resolve(text)
      })
      send({ type: 'shardkv:metrics-request', id })
    })
  }

  answer (id: number, text: string, error?: string): void {
    this.pending.get(id)?.(text, error)
  }
}
