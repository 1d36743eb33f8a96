import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { CoordinatorConfig } from '../src/config/options'
import { createApiServer, loadListenerTls } from '../src/http/server'
import { ClientGuard, installClientGuard } from '../src/auth/client-guard'
import { TokenStore } from '../src/auth/tokens'
import { RateLimiter } from '../src/auth/rate-limit'
import { requirePeerSecret, type PeerCredentials } from '../src/auth/peer'
import { peerServerTls } from '../src/auth/tls'
import { registerOpenApi } from '../src/http/openapi'
import { listenUrl } from '../src/http/listen-url'
import type { Logger } from '../src/log'
import type { PeerHealth } from '../src/membership/map'
import { Coordinator } from './coordinator'
import { CoordinatorMetrics } from './metrics'
import { registerAdminRoutes } from './admin-routes'
import { registerAdminApi } from './admin-api'
import { registerInSyncRoute, registerReplicationRoutes } from './replication-routes'
import { Rebalancer } from './rebalancer'
import { FailoverMonitor } from './failover'
import { registerSwitchoverRoute, Switchover } from './switchover'
import { registerDashboard } from './dashboard'
import { registerCheckRoute } from './check'
import { MapFeed } from './map-feed'
import { RouterRoster } from './router-roster'
import type { Leadership, ServiceDirectory } from './leadership'
import { ShardKvError } from '../src/protocol/errors'
import { HEALTH_PATH, METRICS_PATH } from '../src/protocol/wire'

/**
 * A leading coordinator's listeners and control loops (always, with the file registry;
 * for one term of leadership with etcd): the admin API, the cluster view and the
 * dashboard on its client listener; primaries' in-sync changes and the routers' map feed
 * on its peer listener (or a secret-guarded scope of the client one).
 */

export interface ActiveCoordinator {
  url: string
  /** Where nodes and routers reach the peer endpoints (the advertised URL when one is set). */
  peerUrl: string
  coordinator: Coordinator
  /**
   * Stops the term (a graceful shutdown): its node calls in flight get CALLS_GRACE_MS to
   * finish — the last rebalance batch lands and its progress is saved — then are given up.
   */
  close: () => Promise<void>
  /**
   * Stops a term that no longer leads: its node calls are given up at once (their answers
   * no longer count, its map writes are refused), so a call waiting on a node that does not
   * answer cannot hold the stop for the call's timeout.
   */
  depose: () => Promise<void>
  /** Re-reads the tokens file (SIGHUP); false when it is not configured or the file is bad. */
  reloadTokens: () => boolean
}

/** How long a graceful shutdown lets the term's node calls in flight finish before giving them up. */
export const CALLS_GRACE_MS = 3000

interface ControlParts {
  rebalancer: Rebalancer
  failover: FailoverMonitor
  feed: MapFeed
  roster: RouterRoster
}

/**
 * The control plane at work: this coordinator leads (always, with the file registry).
 * `beforeListen` frees its ports (the standby's listeners) once the term is ready to take
 * them, so that they refuse connections only for that moment, not while the term starts.
 */
export async function startActive (config: CoordinatorConfig, log: Logger, leadership: Leadership, credentials: PeerCredentials, beforeListen?: () => Promise<void>): Promise<ActiveCoordinator> {
  const metrics = new CoordinatorMetrics(
    () => coord.epoch,
    () => leadership.isLeader(),
    () => coord.view().groups.flatMap((g) => g.nodes.map((n) => ({ group: g.id, url: n.url, role: n.role, position: n.position, lag: n.lag }))),
    () => coord.view().groups.map((g) => ({ group: g.id, inSyncReplicas: g.inSyncReplicas, redundancy: g.redundancy }))
  )
  const coord = await Coordinator.open({ dataDir: config.dataDir, groups: config.groups, vnodes: config.vnodes, healthIntervalMs: config.healthIntervalMs, log, metrics, credentials, registry: leadership.registry })
  coord.nodes.fence = leadership.fence()
  const guard = new ClientGuard({
    tokens: config.tokensFile === '' ? undefined : new TokenStore(config.tokensFile, log),
    limits: new RateLimiter({ perToken: config.rateLimitPerToken, perIp: config.rateLimitPerIp, windowMs: config.rateLimitWindowMs })
  })
  const tls = loadListenerTls(config.tlsCert, config.tlsKey)
  const app = createApiServer({ log, maxValueBytes: 1024 * 1024, limits: config, tls })
  installClientGuard(app, guard)
  refuseOnceDeposed(app, leadership)
  await registerOpenApi(app)
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeRequest(request.method, reply.statusCode, reply.elapsedTime)
    done()
  })
  const peerApp = config.peerPort >= 0 ? peerServer(config, log, credentials) : undefined
  if (peerApp !== undefined) refuseOnceDeposed(peerApp, leadership)
  // Routers find the peer listener in /healthz, as the coordinator finds shard nodes'.
  const peer = (): PeerHealth => peerApp === undefined ? {} : { peerPort: (peerApp.server.address() as AddressInfo | null)?.port, peerTls: credentials.tls !== undefined }
  const parts = await registerControl(app, coord, config, { metrics, credentials, log, peer, leading: () => leadership.isLeader(), directory: leadership.directory })
  void (peerApp ?? app).register(async (scope) => {
    requirePeerSecret(scope, credentials.secret)
    registerInSyncRoute(scope, { transition: coord.transition.bind(coord), senderChecks: credentials.secret !== undefined })
    parts.feed.register(scope)
  })
  try {
    await beforeListen?.()
    await app.listen({ host: config.host, port: config.port })
    await peerApp?.listen({ host: config.host, port: config.peerPort })
  } catch (err) {
    await Promise.allSettled([app.close(), peerApp?.close(), coord.close()])
    throw err
  }
  const url = listenUrl(app.server.address() as AddressInfo, tls !== undefined)
  const listenedPeer = peerApp === undefined ? url : listenUrl(peerApp.server.address() as AddressInfo, credentials.tls !== undefined)
  const peerUrl = config.advertiseUrl !== '' ? config.advertiseUrl : listenedPeer
  coord.setAdvertisedUrl(peerUrl)
  coord.start()
  parts.failover.start()
  let stopping = false
  const startup = installOnStartup(coord, log, () => stopping, () => { if (!stopping) parts.rebalancer.resume() })
  let closing: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    closing ??= (async () => {
      stopping = true
      parts.feed.close()
      parts.roster.close()
      await Promise.all([app.close(), peerApp?.close()])
      await parts.rebalancer.stop()
      await parts.failover.stop()
      await startup
      await coord.close()
    })()
    await closing
  }
  const giveUpCalls = (): void => {
    // The lease rounds stop first: a renewal failed by giving its call up is this coordinator's
    // doing, not the primary's, and must not be logged or counted toward a failover.
    void parts.failover.stop()
    void coord.nodes.abandon().catch(() => undefined)
  }
  const close = async (): Promise<void> => {
    const late = setTimeout(giveUpCalls, CALLS_GRACE_MS)
    try {
      await stop()
    } finally {
      clearTimeout(late)
    }
  }
  const depose = async (): Promise<void> => {
    giveUpCalls()
    await stop()
  }
  return { url, peerUrl, coordinator: coord, close, depose, reloadTokens: () => guard.reload() }
}

/**
 * A term that lost its leadership answers as a standby at once (503 `not_leader`, which routers
 * take as "ask etcd who leads") until it is closed, rather than attempt changes that its
 * guarded writes would refuse; /healthz and /metrics still answer.
 */
function refuseOnceDeposed (app: FastifyInstance, leadership: Leadership): void {
  app.addHook('onRequest', (request, _reply, done) => {
    const path = (request.raw.url ?? '').split('?')[0]
    if (leadership.isLeader() || path === HEALTH_PATH || path === METRICS_PATH) {
      done()
      return
    }
    done(new ShardKvError('not_leader', 'this coordinator no longer leads: it is standing by again'))
  })
}

/** A coordinator's peer listener: the client listener's HTTP edge, HTTPS with client certificates under peer TLS. */
function peerServer (config: CoordinatorConfig, log: Logger, credentials: PeerCredentials): FastifyInstance {
  return createApiServer({ log, maxValueBytes: 1024 * 1024, limits: config, ...(credentials.tls !== undefined ? { tls: peerServerTls(credentials.tls) } : {}) })
}

/** The control loops and the client listener's routes: admin API, cluster view, dashboard, switchover, check. */
async function registerControl (app: FastifyInstance, coord: Coordinator, config: CoordinatorConfig,
  ctx: { metrics: CoordinatorMetrics, credentials: PeerCredentials, log: Logger, peer: () => PeerHealth, leading: () => boolean, directory?: ServiceDirectory }): Promise<ControlParts> {
  const { metrics, credentials, log } = ctx
  const transition = coord.transition.bind(coord)
  const rebalancer = await Rebalancer.open({
    registry: coord.registry,
    log,
    nodes: coord.nodes,
    maps: { current: () => coord.map(), transition },
    batchSize: config.rebalanceBatch,
    rate: { bytesPerSecond: config.rebalanceMibPerSec * 1024 * 1024, rowsPerSecond: config.rebalanceRowsPerSec }
  })
  const feed = new MapFeed(() => coord.map(), ctx.leading)
  coord.onPublish((map) => feed.published(map))
  registerAdminRoutes(app, coord, metrics, () => rebalancer.progress(), ctx.leading, ctx.peer)
  // Before the switchover route: the dashboard hooks it as it is added.
  const roster = new RouterRoster(() => feed.routerUrls(), ctx.directory, log)
  registerDashboard(app, { coordinator: coord, rebalance: () => rebalancer.progress(), routers: () => roster.urls(), credentials, log })
  registerAdminApi(app, { currentMap: () => coord.map(), rebalancer, nodes: coord.nodes, switchingOver: () => switchover.isRunning(), registeredNodes: ctx.directory?.nodes })
  registerReplicationRoutes(app, { transition, nodes: coord.nodes })
  const failover = new FailoverMonitor({
    map: () => coord.map(),
    transition,
    statusOf: (url) => coord.health.statusOf(url),
    markDown: (url, why) => coord.health.markDown(url, why),
    nodes: coord.nodes,
    log,
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
  return { rebalancer, failover, feed, roster }
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
