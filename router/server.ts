import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError, type RouterConfig } from '../src/config/options'
import { createApiServer, loadListenerTls } from '../src/http/server'
import { listenUrl } from '../src/http/listen-url'
import { ClientGuard, installClientGuard } from '../src/auth/client-guard'
import { TokenStore } from '../src/auth/tokens'
import { RateLimiter } from '../src/auth/rate-limit'
import { loadPeerCredentials, type PeerCredentials } from '../src/auth/peer'
import { registerOpenApi } from '../src/http/openapi'
import { NodeClient } from '../src/peer/node-client'
import type { ClusterMap } from '../src/membership/map'
import type { Logger } from '../src/log'
import type { FastifyInstance } from 'fastify'
import { refuseOversizedUploads } from './expect-continue'
import { ReadCoalescer } from './read-coalescer'
import { WriteCoalescer } from './write-coalescer'
import { Forwarder } from './forward'
import { registerKvRoutes } from './kv-routes'
import { kvFastPath } from './kv-fast-path'
import { BatchForwarder } from './batch-forward'
import { registerBatchRoutes } from './batch-routes'
import { RouterMetrics } from './metrics'
import { registerServiceRoutes } from './service-routes'
import { registerControlRelay } from './control-relay'
import { CoordinatorFollower, type MapFollower } from './map-follower'
import { EtcdFollower } from './etcd-follower'
import { registerWatchRoutes } from './watch-routes'
import { registerMapRoute } from './map-route'

/**
 * A router process: the data plane. It forwards the data API to shard primaries by the
 * map it follows (router/map-follower.ts), and relays the control plane's API to the
 * coordinator (router/control-relay.ts); it holds no state of its own, so any number
 * of routers can run. HTTP edge behaviour shared with shard nodes
 * (raw-bytes body parsing and its limit, JSON errors, 404/405, bad URLs, oversized
 * headers) comes from src/http/server.ts so both sides answer bad input alike.
 */

const IDLE_SWEEP_MS = 50
const DRAIN_GRACE_MS = 100
const FIRST_MAP_WAIT_MS = 5000

export interface RunningRouter {
  url: string
  /** Stops accepting, lets in-flight requests finish, then closes the upstream pools. */
  close: () => Promise<void>
  /** Re-reads the tokens file (SIGHUP); false when it is not configured or the file is bad (old tokens kept). */
  reloadTokens: () => boolean
  /** The epoch of the map it routes by. */
  epoch: () => number
}

export async function startRouter (config: RouterConfig, log: Logger): Promise<RunningRouter> {
  const credentials = loadPeerCredentials(config)
  let url: string | undefined
  const follower = await followerOf(config, credentials, log, () => url)
  const metrics = new RouterMetrics(() => follower.table().epoch)
  const guard = new ClientGuard({
    tokens: config.tokensFile === '' ? undefined : new TokenStore(config.tokensFile, log),
    limits: new RateLimiter({ perToken: config.rateLimitPerToken, perIp: config.rateLimitPerIp, windowMs: config.rateLimitWindowMs }),
    // The coordinator scrapes routers' /metrics for the dashboard with the cluster secret.
    peer: credentials.secret
  })
  const tls = loadListenerTls(config.tlsCert, config.tlsKey)
  const nodes = new NodeClient({ credentials, mapPeerOf: (u) => peerInMap(follower.table().map, u) })
  const forwarder = new Forwarder({ peerHeaders: credentials.secret?.headers, peerTls: credentials.tls, table: () => follower.table(), connections: config.connections,
    onceMapChanged: (listener) => follower.onceChanged(listener), upstreamTimeoutMs: config.upstreamTimeoutMs, retryTimeoutMs: config.retryTimeoutMs, metrics, log, nodes })
  // 0: no limit (every turn's share of a primary is sent at once).
  const maxInFlight = config.coalesceInFlight === 0 ? undefined : config.coalesceInFlight
  const reads = new ReadCoalescer({ forwarder, table: () => follower.table(), maxKeys: config.readCoalesceMaxKeys, maxInFlight, metrics })
  const kv = new WriteCoalescer({ forwarder, next: reads, table: () => follower.table(), maxKeys: config.writeCoalesceMaxKeys, maxInFlight, metrics })

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
  registerServiceRoutes(app, metrics, () => follower.table().epoch)
  registerMapRoute(app, follower)
  registerKvRoutes(app, { forwarder: kv, maxValueBytes: config.maxValueBytes, isDraining: () => draining })
  serveAheadOfFastify(app.server, kvFastPath({ forwarder: kv, maxValueBytes: config.maxValueBytes, metrics, log, isDraining: () => draining, guard }))
  registerBatchRoutes(app, {
    batches: new BatchForwarder({ table: () => follower.table(), forwarder, retryTimeoutMs: config.retryTimeoutMs, metrics, log }),
    metrics,
    limits: { maxOps: config.maxBatchOps, maxValueBytes: config.maxValueBytes },
    maxBatchBytes: config.maxBatchBytes,
    isDraining: () => draining
  })
  registerWatchRoutes(app, { registry: metrics.registry, table: () => follower.table(), credentials, log, maxStreamsPerToken: config.watchMaxStreamsPerToken, bufferBytes: config.watchStreamBufferBytes, maxValueBytes: config.maxValueBytes })
  const relay = registerControlRelay(app, { coordinatorUrl: () => follower.coordinatorUrl(), refreshCoordinator: async () => await follower.refreshCoordinator(), electedLeader: follower.electedLeader, onCoordinatorChange: (l) => follower.onCoordinatorChange(l), peerTls: credentials.tls })
  refuseOversizedUploads(app.server, config.maxValueBytes)

  // Routing starts with a map: a router that says it listens should route. A coordinator
  // that is not up yet only delays that; past FIRST_MAP_WAIT_MS the router serves 503s
  // until the map arrives (and says so), so it never refuses to start.
  follower.start()
  if (!await follower.firstMap(FIRST_MAP_WAIT_MS)) {
    log.warn({ event: 'no-map-yet', coordinator: follower.coordinatorUrl() }, `no map from the coordinator within ${FIRST_MAP_WAIT_MS} ms: answering 503 until it arrives`)
  }
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    await Promise.allSettled([app.close(), forwarder.close(), follower.close(), relay.close(), nodes.close()])
    throw err
  }
  url = listenUrl(app.server.address() as AddressInfo, tls !== undefined)
  follower.announce(config.advertiseUrl !== '' ? config.advertiseUrl : url)

  const close = drainThenClose(app, () => { draining = true }, async () => {
    await Promise.all([forwarder.close(), follower.close(), relay.close(), nodes.close()])
  })
  return { url, close, reloadTokens: () => guard.reload(), epoch: () => follower.table().epoch }
}

/**
 * The router's stop: answers say `Connection: close` (draining), requests already in
 * transit are served, connections are closed as they fall idle, and the pools (which
 * in-flight requests still need) close last. Idempotent.
 */
function drainThenClose (app: FastifyInstance, drain: () => void, closePools: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined
  return async () => {
    closing ??= (async () => {
      drain()
      // A request a client already sent on a kept-alive connection may still be unread
      // in the socket; closing that "idle" connection now would reset it.
      await sleep(DRAIN_GRACE_MS)
      // server.close() waits for every connection, but clients keep theirs alive:
      // connections that fall idle are closed as they do, not only those idle now.
      const sweeper = setInterval(() => { app.server.closeIdleConnections() }, IDLE_SWEEP_MS)
      sweeper.unref()
      try {
        await app.close()
      } finally {
        clearInterval(sweeper)
      }
      await closePools()
    })()
    await closing
  }
}

/** The map source a router's configuration names: a coordinator's feed, or the map in etcd. */
async function followerOf (config: RouterConfig, credentials: PeerCredentials, log: Logger, self: () => string | undefined): Promise<MapFollower> {
  if (config.registry !== 'file') {
    if (config.coordinator !== '') throw new ConfigError('--coordinator and --registry etcd://... exclude each other: with etcd the router follows the map there')
    return EtcdFollower.open({ registry: config.registry, cluster: config.registryCluster, registrationTtlSeconds: config.registryTtlSeconds, log })
  }
  if (config.coordinator === '') throw new ConfigError('--coordinator is required (the URL of the coordinator whose map this router follows), or --registry etcd://...')
  let coordinator: string
  try {
    coordinator = new URL(config.coordinator).origin
  } catch {
    throw new ConfigError(`--coordinator ${config.coordinator} is not a URL`)
  }
  return new CoordinatorFollower({ coordinator, self, credentials, log })
}

/** The peer URL the map gives a node, if any (copy on touch reaches nodes' peer listeners). */
function peerInMap (map: ClusterMap, url: string): string | undefined {
  for (const g of map.groups) {
    const node = g.nodes.find((n) => n.url === url)
    if (node !== undefined) return node.peer
  }
  return undefined
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

