import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Agent, request as upstream, type Dispatcher } from '../src/http/undici'
import { withPeerTls, type PeerTls } from '../src/auth/tls'
import { documented } from '../src/http/openapi'
import { describeUpstreamError, upstreamErrorCode } from '../src/http/upstream-errors'
import { ShardKvError } from '../src/protocol/errors'
import { RELAYED_ROUTES } from '../src/protocol/schemas'
import { DASHBOARD } from '../src/protocol/wire'
import { DASHBOARD_EVENTS, type DashboardBye } from '../src/protocol/dashboard'

/**
 * The router's door to the control plane: the admin API, GET /cluster and the dashboard
 * are the coordinator's, and the router relays them there unchanged, so operators,
 * scripts and the `shardkv` command keep talking to any router. The client's own
 * credentials travel with the call (the coordinator checks the token again, and shows the
 * dashboard's buttons by its role); the router adds no authority of its own.
 *
 * A call whose answer is lost (the coordinator died, a reset) may have been applied, so it
 * is answered 503 (outcome unknown), never a 4xx. The answer is streamed back as it comes
 * (the dashboard's event stream never ends), status and the headers that mean something
 * to a client included.
 */

/** Admin calls that wait for work (a switchover, a check's page) get this long to answer. */
const RELAY_TIMEOUT_MS = 120_000
/** More than a coordinator's dashboard streams (32) plus admin calls: a stream holds its connection for as long as it is open. */
const RELAY_CONNECTIONS = 64
/** How long a relayed call may look for the acting coordinator (a standby refused it, or none is known), and how often it asks. */
const LEADER_SETTLE_MS = 10_000
const LEADER_SETTLE_POLL_MS = 100
const FORWARDED_REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'last-event-id', 'x-shardkv-request-id'] as const
const RELAYED_ANSWER_HEADERS = ['content-type', 'cache-control', 'location', 'retry-after', 'www-authenticate', 'x-content-type-options',
  'content-security-policy', 'referrer-policy', 'x-accel-buffering', 'etag', 'last-modified'] as const

export interface RelayOptions {
  /** The acting coordinator's client URL, when known. */
  coordinatorUrl: () => string | undefined
  /** Asks again who acts: a leader that refuses connections was replaced, or is being. */
  refreshCoordinator: () => Promise<string | undefined>
  /** True when coordinators are elected (etcd): the one named may be starting its term, so a refused connection is tried again. */
  electedLeader: boolean
  /** Tells of each new acting coordinator (calls still waiting on the one before are given up). */
  onCoordinatorChange: (listener: (url: string) => void) => () => void
  /** To verify a coordinator serving HTTPS with the cluster's CA. */
  peerTls?: PeerTls
}

export function registerControlRelay (app: FastifyInstance, opts: RelayOptions): { close: () => Promise<void> } {
  const ctx: RelayContext = {
    agent: new Agent(withPeerTls({ connections: RELAY_CONNECTIONS, keepAliveTimeout: 10_000 }, opts.peerTls)),
    opts,
    streams: new Set<RelayedStream>(),
    waits: new Set<AnswerWait>()
  }
  // A leader that hangs (frozen, or cut off by the network) refuses no connection: the calls
  // waiting on it would wait out RELAY_TIMEOUT_MS after another coordinator took over.
  const stopWatching = opts.onCoordinatorChange((url) => {
    for (const wait of ctx.waits) {
      if (wait.target === url) continue
      wait.movedTo = url
      wait.controller.abort(new Error(`${wait.target} no longer leads (${url} does)`))
    }
    // A dashboard stream from the old one would go quiet (frozen) or stream a standby's nothing: the page reconnects.
    for (const s of ctx.streams) if (s.source !== url) s.bye('leader-changed')
  })
  const relay = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => await relayTo(ctx, request, reply)
  for (const r of RELAYED_ROUTES) app.route({ method: r.method, url: r.url, ...documented(r.schema), handler: relay })
  app.get(DASHBOARD.page, { exposeHeadRoute: false }, relay)
  app.get(`${DASHBOARD.page}/*`, { exposeHeadRoute: false }, relay)
  // fastify's close waits for open answers, and an event stream never ends by itself: end
  // each with the dashboard's `bye` (the page reconnects, to another router if need be).
  app.addHook('preClose', (done) => {
    for (const s of ctx.streams) s.bye('closing')
    done()
  })
  return {
    close: async () => {
      stopWatching()
      await ctx.agent.close()
    }
  }
}

/** A dashboard event stream relayed from the coordinator at `source`. */
interface RelayedStream { source: string, bye: (reason: DashboardBye['reason']) => void }

/** A relayed call waiting for its answer's head from `target`. */
interface AnswerWait { target: string, controller: AbortController, movedTo?: string }

interface RelayContext {
  agent: Dispatcher
  opts: RelayOptions
  streams: Set<RelayedStream>
  waits: Set<AnswerWait>
}

/** The answer of the coordinator at `source` piped to the client; an event stream is registered in `streams` while it runs. */
function pipeAnswer (res: Dispatcher.ResponseData, reply: FastifyReply, streams: Set<RelayedStream>, source: string): void {
  const raw = reply.raw
  raw.writeHead(res.statusCode, reply.getHeaders() as Record<string, string>)
  const stream: RelayedStream = {
    source,
    bye: (reason) => {
      res.body.destroy()
      const bye: DashboardBye = { reason }
      raw.end(`event: ${DASHBOARD_EVENTS.bye}\ndata: ${JSON.stringify(bye)}\n\n`)
    }
  }
  const done = (): void => {
    streams.delete(stream)
    if (!raw.writableEnded) raw.end()
  }
  streams.add(stream)
  res.body.on('data', (chunk: Buffer) => { raw.write(chunk) })
  res.body.on('end', done).on('error', done).on('close', done)
}

async function relayTo (ctx: RelayContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const { opts, streams } = ctx
  const settleBy = Date.now() + LEADER_SETTLE_MS
  // Unknown between two polls of the leader key (the old leader's lease ran out before the
  // new one campaigned): ask again, until one is elected, rather than refuse a call a leader could answer.
  const target = opts.coordinatorUrl() ?? await electedBy(ctx, settleBy)
  if (target === undefined) throw new ShardKvError('unavailable', 'no coordinator is known yet: the control plane is unreachable from this router')
  let answer: LeaderAnswer
  try {
    answer = await answerFromLeader(ctx, request, target, settleBy)
  } catch (err) {
    const maybeApplied = request.method !== 'GET'
    throw new ShardKvError('unavailable', `the coordinator did not answer (${describeUpstreamError(err)})${maybeApplied ? ': the call may or may not have been applied; read the cluster view before repeating it' : ''}`)
  }
  if ('refusal' in answer) return await reply.code(answer.status).type('application/json').send(answer.refusal)
  const res = answer.res
  // The client went away (a dashboard tab closed): stop reading the coordinator's stream.
  reply.raw.on('close', () => { res.body.destroy() })
  void reply.code(res.statusCode)
  for (const name of RELAYED_ANSWER_HEADERS) {
    const v = res.headers[name]
    if (typeof v === 'string') void reply.header(name, v)
  }
  if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    pipeAnswer(res, reply.hijack(), streams, answer.from)
    return reply
  }
  return await reply.send(res.body)
}

type LeaderAnswer = { res: Dispatcher.ResponseData, from: string } | { refusal: string, status: number }

/**
 * The acting coordinator's answer, starting with `target`. A refused connection (nothing
 * was sent) and a standby's not_leader (nothing was done) let any call go again until
 * `settleBy`, and so does a read whose connection was reset or closed (a leader killed as
 * it was sent: a read changes nothing) — to whoever the leader key names now or, when it
 * names the one that failed, to the same one once it has started its term (with etcd, a
 * coordinator re-listens on its ports as it starts leading, and its key outlives a dead one
 * until the lease ends).
 */
async function answerFromLeader (ctx: RelayContext, request: FastifyRequest, target: string, settleBy: number): Promise<LeaderAnswer> {
  const call = upstreamCall(ctx, request)
  let current = target
  for (;;) {
    let res: Dispatcher.ResponseData
    try {
      ({ res, from: current } = await call(current))
    } catch (err) {
      if (!mayCallAgain(err, request.method)) throw err
      const next = await electedBy(ctx, settleBy)
      if (next === undefined || (next === current && !ctx.opts.electedLeader)) throw err
      current = await settle(current, next)
      continue
    }
    const refusal = await refusalOf(res)
    if (refusal === undefined) return { res, from: current }
    const next = refusal.standby ? await electedBy(ctx, settleBy) : undefined
    if (next === undefined) return { refusal: refusal.text, status: res.statusCode }
    current = await settle(current, next)
  }
}

/** Connection failures after which a call may go again: nothing was sent, or only a read was. */
function mayCallAgain (err: unknown, method: string): boolean {
  const code = upstreamErrorCode(err)
  if (code === 'ECONNREFUSED') return true
  return method === 'GET' && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET')
}

/**
 * Who the leader key names, read again until it names one (between a dead leader's lease
 * running out and the next election it names none), or undefined once `deadline` has passed.
 */
async function electedBy (ctx: RelayContext, deadline: number): Promise<string | undefined> {
  for (;;) {
    const leader = await leaderBy(ctx, deadline)
    if (leader !== undefined || Date.now() >= deadline) return leader
    await sleep(Math.min(LEADER_SETTLE_POLL_MS, deadline - Date.now()))
  }
}

/**
 * Who the leader key names, read again, or undefined once `deadline` has passed: etcd
 * without a quorum answers no read, and a relayed call must not wait on it past the deadline.
 */
async function leaderBy (ctx: RelayContext, deadline: number): Promise<string | undefined> {
  const left = deadline - Date.now()
  if (left <= 0) return undefined
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, left) })
  try {
    return await Promise.race([ctx.opts.refreshCoordinator(), late])
  } finally {
    clearTimeout(timer)
  }
}

/** The coordinator to call next: at once when another leads, after a pause when it is the same one. */
async function settle (current: string, next: string): Promise<string> {
  if (next === current) await sleep(LEADER_SETTLE_POLL_MS)
  return next
}

/** One call to a coordinator; a read that waited on a leader replaced meanwhile goes to the new one. */
function upstreamCall (ctx: RelayContext, request: FastifyRequest): (to: string) => Promise<{ res: Dispatcher.ResponseData, from: string }> {
  const headers: Record<string, string> = {}
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const v = request.headers[name]
    if (typeof v === 'string') headers[name] = v
  }
  const body = Buffer.isBuffer(request.body) && request.method !== 'GET' ? request.body : undefined
  const call = async (to: string): Promise<{ res: Dispatcher.ResponseData, from: string }> => {
    const wait: AnswerWait = { target: to, controller: new AbortController() }
    ctx.waits.add(wait)
    try {
      return { from: to, res: await upstream(to + request.url, { method: request.method as Dispatcher.HttpMethod, headers, body, dispatcher: ctx.agent, headersTimeout: RELAY_TIMEOUT_MS, bodyTimeout: 0, signal: wait.controller.signal }) }
    } catch (err) {
      // Given up on a replaced leader: a read asks the new one. Any other call may still be
      // applied by the old leader (if it wakes and has not noticed), so it fails: 503, outcome unknown.
      if (wait.movedTo !== undefined && request.method === 'GET') return await call(wait.movedTo)
      throw err
    } finally {
      // Once the head is in, the answer is the client's, however long it streams.
      ctx.waits.delete(wait)
    }
  }
  return call
}

/** A coordinator's 503 answer, read (so the body is consumed), and whether it is a standby's `not_leader`. */
async function refusalOf (res: Dispatcher.ResponseData): Promise<{ text: string, standby: boolean } | undefined> {
  if (res.statusCode !== 503 || !String(res.headers['content-type'] ?? '').startsWith('application/json')) return undefined
  const text = await res.body.text()
  try {
    return { text, standby: (JSON.parse(text) as { error?: unknown }).error === 'not_leader' }
  } catch {
    return { text, standby: false }
  }
}
