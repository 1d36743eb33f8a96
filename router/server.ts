import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RouterConfig } from '../src/config/options'
import { createApiServer, loadListenerTls } from '../src/http/server'
import { ClientGuard, installClientGuard } from '../src/auth/client-guard'
import { TokenStore } from '../src/auth/tokens'
import { RateLimiter } from '../src/auth/rate-limit'
import type { Logger } from '../src/log'
import { registerAdminRoutes } from './admin-routes'
import { Coordinator } from './coordinator'
import { refuseOversizedUploads } from './expect-continue'
import { ReadCoalescer } from './read-coalescer'
import { Forwarder } from './forward'
import { registerKvRoutes } from './kv-routes'
import { kvFastPath } from './kv-fast-path'
import { BatchForwarder } from './batch-forward'
import { registerBatchRoutes } from './batch-routes'
import { RouterMetrics } from './metrics'
import { Rebalancer } from './rebalancer'
import { registerAdminApi } from './admin-api'
import { registerInSyncRoute, registerReplicationRoutes } from './replication-routes'
import { loadPeerCredentials, requirePeerSecret, type PeerCredentials } from '../src/auth/peer'
import { peerServerTls } from '../src/auth/tls'
import type { FastifyInstance } from 'fastify'
import { FailoverMonitor } from './failover'
import { registerSwitchoverRoute, Switchover } from './switchover'
import { registerOpenApi } from './openapi'
import { registerDashboard } from './dashboard'
import { registerCheckRoute } from './check'
import { registerWatchRoutes } from './watch-routes'

/**
 * A router process's HTTP side: the data API forwarded to shard primaries, plus
 * health, metrics and the cluster view. HTTP edge behaviour shared with shard nodes
 * (raw-bytes body parsing and its limit, JSON errors, 404/405, bad URLs, oversized
 * headers) comes from src/http/server.ts so both sides answer bad input alike.
 */

const IDLE_SWEEP_MS = 50
const DRAIN_GRACE_MS = 100

export interface RunningRouter {
  url: string
  /** Where peers reach this router's internal endpoint (the client URL without a peer port). */
  peerUrl: string
  coordinator: Coordinator
  /** Stops accepting, lets in-flight requests finish, then closes the upstream pools. */
  close: () => Promise<void>
  /** Re-reads the tokens file (SIGHUP); false when it is not configured or the file is bad (old tokens kept). */
  reloadTokens: () => boolean
}

export async function startRouter (config: RouterConfig, log: Logger): Promise<RunningRouter> {
  // The epoch gauge reads the coordinator at scrape time, after both exist.
  const metrics = new RouterMetrics(
    () => coord.epoch,
    () => coord.view().groups.flatMap((g) => g.nodes.map((n) => ({ group: g.id, url: n.url, role: n.role, position: n.position, lag: n.lag }))),
    () => coord.view().groups.map((g) => ({ group: g.id, inSyncReplicas: g.inSyncReplicas, redundancy: g.redundancy }))
  )
  const credentials = loadPeerCredentials(config)
  const coord = await Coordinator.fromConfig(config, log, metrics, credentials)
  const guard = new ClientGuard({
    tokens: config.tokensFile === '' ? undefined : new TokenStore(config.tokensFile, log),
    limits: new RateLimiter({ perToken: config.rateLimitPerToken, perIp: config.rateLimitPerIp, windowMs: config.rateLimitWindowMs })
  })
  const tls = loadListenerTls(config.tlsCert, config.tlsKey)
  const forwarder = new Forwarder({
    peerHeaders: credentials.secret?.headers,
    peerTls: credentials.tls,
    table: () => coord.table,
    connections: config.connections,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    retryTimeoutMs: config.retryTimeoutMs,
    metrics,
    log,
    nodes: coord.nodes
  })

  const reads = new ReadCoalescer({ forwarder, table: () => coord.table, maxKeys: config.readCoalesceMaxKeys, metrics })

  // fastify refuses a body limit of 0; kv-routes enforces the exact limit itself.
  const app = createApiServer({ log, maxValueBytes: Math.max(1, config.maxValueBytes), limits: config, tls })
  installClientGuard(app, guard)
  // First: the description learns every route registered after it.
  await registerOpenApi(app)
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeRequest(request.method, reply.statusCode, reply.elapsedTime)
    done()
  })
  let draining = false
  registerKvRoutes(app, { forwarder: reads, maxValueBytes: config.maxValueBytes, isDraining: () => draining })
  serveAheadOfFastify(app.server, kvFastPath({ forwarder: reads, maxValueBytes: config.maxValueBytes, metrics, log, isDraining: () => draining, guard }))
  registerBatchRoutes(app, {
    batches: new BatchForwarder({ table: () => coord.table, forwarder, retryTimeoutMs: config.retryTimeoutMs, metrics, log }),
    metrics,
    limits: { maxOps: config.maxBatchOps, maxValueBytes: config.maxValueBytes },
    maxBatchBytes: config.maxBatchBytes,
    isDraining: () => draining
  })
  registerWatchRoutes(app, { registry: metrics.registry, table: () => coord.table, nodes: coord.nodes, credentials, log })
  const rebalancer = await Rebalancer.open({
    registry: coord.registry,
    log,
    nodes: coord.nodes,
    maps: { current: () => coord.map(), transition: async (reason, compute) => await coord.transition(reason, compute) },
    batchSize: config.rebalanceBatch,
    rowsPerSecond: config.rebalanceRowsPerSec
  })
  registerAdminRoutes(app, coord, metrics, () => rebalancer.progress())
  registerDashboard(app, { coordinator: coord, rebalance: () => rebalancer.progress(), metrics, credentials, log })
  // The switchover is made below, with the failover monitor whose leases it holds.
  registerAdminApi(app, { currentMap: () => coord.map(), rebalancer, nodes: coord.nodes, switchingOver: () => switchover.isRunning() })
  const transition = async (reason: string, compute: Parameters<Coordinator['transition']>[1]): ReturnType<Coordinator['transition']> => await coord.transition(reason, compute)
  registerReplicationRoutes(app, { transition, nodes: coord.nodes })
  const peerApp = config.peerPort >= 0 ? peerServer(config, log, credentials) : undefined
  void (peerApp ?? app).register(async (scope) => {
    requirePeerSecret(scope, credentials.secret)
    registerInSyncRoute(scope, { transition, senderChecks: credentials.secret !== undefined })
  })
  const failover = new FailoverMonitor({
    map: () => coord.map(),
    transition,
    statusOf: (url) => coord.health.statusOf(url),
    nodes: coord.nodes,
    log,
    intervalMs: config.healthIntervalMs,
    leaseMs: config.leaseMs,
    missedChecks: config.failoverAfter,
    onFailover: (group) => metrics.countFailover(group)
  })
  const switchover = new Switchover({
    map: () => coord.map(),
    transition,
    nodes: coord.nodes,
    statusOf: (url) => coord.health.statusOf(url),
    leases: failover,
    rebalancing: () => rebalancer.isRunning(),
    log,
    // Clients' writes wait (retried 421s) while the replica catches up: give up well within their retry budget.
    catchUpTimeoutMs: Math.max(1000, Math.floor(config.retryTimeoutMs / 2))
  })
  registerSwitchoverRoute(app, switchover)
  registerCheckRoute(app, { map: () => coord.map(), nodes: coord.nodes, credentials })
  refuseOversizedUploads(app.server, config.maxValueBytes)

  try {
    await app.listen({ host: config.host, port: config.port })
    await peerApp?.listen({ host: config.host, port: config.peerPort })
  } catch (err) {
    await Promise.allSettled([app.close(), peerApp?.close(), forwarder.close(), coord.close()])
    throw err
  }
  const url = listenUrl(app.server.address() as AddressInfo, tls !== undefined)
  // Shard nodes ask the coordinator (in-sync changes) where peers are served.
  const peerUrl = peerApp === undefined ? url : listenUrl(peerApp.server.address() as AddressInfo, credentials.tls !== undefined)
  coord.setAdvertisedUrl(peerUrl)
  coord.start()
  failover.start()
  let stopping = false
  const startup = installOnStartup(coord, log, () => stopping, () => { if (!stopping) rebalancer.resume() })

  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      draining = true
      stopping = true
      // A request a client already sent on a kept-alive connection may still be unread
      // in the socket; closing that "idle" connection now would reset it. Serve what
      // is in transit first (answers say `Connection: close` while draining).
      await sleep(DRAIN_GRACE_MS)
      // server.close() waits for every connection, but clients keep theirs alive:
      // connections that fall idle are closed as they do, not only those idle now.
      const sweeper = setInterval(() => { app.server.closeIdleConnections() }, IDLE_SWEEP_MS)
      sweeper.unref()
      try {
        // fastify waits for in-flight requests, which still need the pools; close those after.
        await Promise.all([app.close(), peerApp?.close()])
      } finally {
        clearInterval(sweeper)
      }
      await rebalancer.stop()
      await failover.stop()
      await startup
      await Promise.all([forwarder.close(), coord.close()])
    })()
    await closing
  }

  return { url, peerUrl, coordinator: coord, close, reloadTokens: () => guard.reload() }
}

/**
 * Puts a request listener in front of fastify's: fastify installs its handler as the
 * server's 'request' listener when it is created; the fast path takes the requests it
 * answers and hands every other one to fastify unchanged (also those that
 * expect-continue.ts re-emits after "100 Continue").
 */
function serveAheadOfFastify (server: Server, fast: (req: IncomingMessage, res: ServerResponse) => boolean): void {
  const listeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>
  if (listeners.length !== 1) throw new Error(`expected fastify's one request listener, found ${listeners.length}`)
  const fastify = listeners[0] as (req: IncomingMessage, res: ServerResponse) => void
  server.removeListener('request', fastify)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!fast(req, res)) fastify(req, res)
  })
}

/**
 * First completes a transition this coordinator had begun installing when it died
 * (Coordinator.resumePending), then resumes a persisted rebalance, then installs the
 * current map everywhere so every node knows this coordinator's URL. That last step is
 * best effort: nodes that lag are caught up by the health checker anyway, and a
 * resumed rebalance installs newer maps itself (nodes may hold the map of an
 * interrupted rebalance phase, which the rebalance redoes).
 */
async function installOnStartup (coord: Coordinator, log: Logger, stopped: () => boolean, resume: () => void): Promise<void> {
  for (let attempt = 1; !stopped(); attempt++) {
    try {
      await coord.resumePending()
      break
    } catch (err) {
      if (attempt === 1 || attempt % 10 === 0) log.warn({ event: 'resume-transition-retry', attempt, err: (err as Error).message }, 'could not complete the interrupted transition yet; retrying')
      await sleep(500)
    }
  }
  resume()
  for (let attempt = 1; attempt <= 20 && !stopped(); attempt++) {
    try {
      await coord.transition('startup', (current) => current)
      return
    } catch (err) {
      if (attempt === 1 || attempt % 10 === 0) log.warn({ event: 'startup-install-retry', attempt, err: (err as Error).message }, 'could not install the map on every node yet; retrying')
      await sleep(500)
    }
  }
}

/** A URL a local client can connect to (an unspecified bind address becomes loopback). */
function listenUrl (address: AddressInfo, tls = false): string {
  let host = address.address
  if (host === '0.0.0.0') host = '127.0.0.1'
  if (host === '::') host = '::1'
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`
}

/** The router's peer listener: the client listener's HTTP edge, HTTPS with client certificates under peer TLS. */
function peerServer (config: RouterConfig, log: Logger, credentials: PeerCredentials): FastifyInstance {
  return createApiServer({ log, maxValueBytes: 1024 * 1024, limits: config, ...(credentials.tls !== undefined ? { tls: peerServerTls(credentials.tls) } : {}) })
}
