import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Logger } from '../../src/log'
import { ADMIN, DASHBOARD } from '../../src/protocol/wire'
import type { ClusterView } from '../../src/protocol/cluster-view'
import type { DashboardViewer } from '../../src/protocol/dashboard'
import type { RebalanceProgress } from '../../src/membership/rebalance'
import type { Principal } from '../../src/auth/tokens'
import type { PeerCredentials } from '../../src/auth/peer'
import type { Coordinator } from '../coordinator'
import { DashboardHub } from './hub'
import { OperationLog } from './operations'
import { TrafficSampler } from './traffic'

/**
 * The cluster's live dashboard, served by the coordinator (routers relay it): a static page at `/ui/` (coordinator/dashboard/public: HTML, one
 * JS module, CSS; no build step) and `GET /ui/events`, a Server-Sent Events stream of
 * cluster snapshots (src/protocol/dashboard.ts).
 *
 * Authentication. The page and its files are open: they hold nothing. The stream needs the
 * `read` role (src/auth/client-guard.ts ruleOf), through the same `Authorization: Bearer`
 * header as every other call: the page reads the stream with fetch() rather than
 * EventSource, which cannot send headers. So the token never appears in a URL (where it
 * would end up in logs, history and Referer), and no second credential (a stream ticket
 * and its signing key) exists to be issued, expired and revoked: revoking the token stops
 * the stream within a stream's lifetime (hub.ts). Admin buttons call the admin API with the
 * same header; the page shows them when the stream's `hello` says the token has `admin`.
 */

export interface DashboardContext {
  coordinator: Pick<Coordinator, 'view' | 'map'>
  rebalance: () => RebalanceProgress | null
  /** Client URLs of the routers following this coordinator: their traffic is the dashboard's router line. */
  routers: () => readonly string[]
  credentials: PeerCredentials
  log: Logger
}

/** The switchover route (coordinator/switchover.ts), whose calls the dashboard shows while they run. */
const SWITCHOVER_ROUTE = `${ADMIN.groups}/:id/switchover`

/** What every dashboard file is served with: only its own scripts, styles and connections. */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache'
} as const

/**
 * The page's files. dist/ holds compiled TypeScript only, so they are served from the
 * source tree: coordinator/dashboard/public next to this file when it runs from source, or
 * three levels up from dist/coordinator/dashboard.
 */
export function publicDir (): string {
  const candidates = [join(__dirname, 'public'), resolve(__dirname, '..', '..', '..', 'coordinator', 'dashboard', 'public')]
  const found = candidates.find((dir) => existsSync(join(dir, 'index.html')))
  if (found === undefined) throw new Error(`the dashboard's files are missing (looked in ${candidates.join(', ')})`)
  return found
}

export function viewerOf (principal: Principal | null): DashboardViewer {
  // No principal: clients are not authenticated (no tokens file), so the admin API is open too.
  return principal === null ? { name: null, admin: true } : { name: principal.name, admin: principal.roles.has('admin') }
}

/** Must be called before the switchover route is registered (it hooks that route as it is added). */
export function registerDashboard (app: FastifyInstance, ctx: DashboardContext): void {
  const view = (): ClusterView => {
    const handover = ctx.coordinator.map().handover
    // As GET /cluster (admin-routes.ts) answers it.
    return { ...ctx.coordinator.view(), ...(handover !== undefined ? { handover } : {}), rebalance: ctx.rebalance() }
  }
  const operations = new OperationLog()
  const sampler = new TrafficSampler(ctx.routers, ctx.credentials)
  const hub = new DashboardHub({ view, operations, log: ctx.log, sampleTraffic: async (v) => await sampler.sample(primariesOf(v)) })

  void app.register(fastifyStatic, {
    root: publicDir(),
    prefix: DASHBOARD.page,
    redirect: true,
    index: 'index.html',
    decorateReply: false,
    setHeaders: (reply: FastifyReply) => { reply.headers(PAGE_HEADERS) }
  })

  // No HEAD twin: it would open a stream (and take a place) to send nothing.
  app.get(DASHBOARD.events, { exposeHeadRoute: false }, (request, reply) => {
    const stream = hub.open(viewerOf(request.principal), reply.raw)
    return reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      .send(stream)
  })

  let hooked = false
  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.url !== SWITCHOVER_ROUTE || route.method !== 'POST') return
    hooked = true
    route.preHandler = [...asArray(route.preHandler), (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
      operations.switchoverStarted(groupParam(request), view())
      done()
    }]
    route.onSend = [...asArray(route.onSend), (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
      operations.switchoverEnded(groupParam(request), reply.statusCode < 300, errorMessage(payload), view())
      done(null, payload)
    }]
  })
  app.addHook('onReady', (done) => {
    if (!hooked) ctx.log.warn({ event: 'dashboard-switchover-unhooked' }, 'the dashboard was registered after the switchover route: it will not show switchovers as they run')
    done()
  })
  // fastify's close waits for open responses: end the streams first.
  app.addHook('preClose', (done) => {
    hub.close()
    done()
  })
  app.addHook('onClose', async () => { await sampler.close() })
}

function primariesOf (view: ClusterView): Map<string, string> {
  const out = new Map<string, string>()
  for (const g of view.groups) {
    const primary = g.nodes.find((n) => n.role === 'primary')
    if (primary !== undefined) out.set(g.id, primary.url)
  }
  return out
}

function asArray<T> (hooks: T | T[] | undefined): T[] {
  return hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]
}

function groupParam (request: FastifyRequest): string {
  // Shown on the page: an id the map does not have is refused, but still named in the failure.
  return ((request.params as { id?: string }).id ?? '').slice(0, 64)
}

function errorMessage (payload: unknown): string {
  try {
    const body = JSON.parse(typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : '{}') as { message?: unknown }
    return typeof body.message === 'string' ? body.message : 'the switchover failed'
  } catch {
    return 'the switchover failed'
  }
}
