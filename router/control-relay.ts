import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Agent, request as upstream, type Dispatcher } from 'undici'
import { withPeerTls, type PeerTls } from '../src/auth/tls'
import { documented } from '../src/http/openapi'
import { describeUpstreamError, upstreamErrorCode } from '../src/http/upstream-errors'
import { ShardKvError } from '../src/protocol/errors'
import { RELAYED_ROUTES } from '../src/protocol/schemas'
import { DASHBOARD } from '../src/protocol/wire'
import { DASHBOARD_EVENTS } from '../src/protocol/dashboard'

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
const FORWARDED_REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'last-event-id', 'x-shardkv-request-id'] as const
const RELAYED_ANSWER_HEADERS = ['content-type', 'cache-control', 'location', 'retry-after', 'www-authenticate', 'x-content-type-options',
  'content-security-policy', 'referrer-policy', 'x-accel-buffering', 'etag', 'last-modified'] as const

export interface RelayOptions {
  /** The acting coordinator's client URL, when known. */
  coordinatorUrl: () => string | undefined
  /** Asks again who acts: a leader that refuses connections was replaced, or is being. */
  refreshCoordinator: () => Promise<string | undefined>
  /** To verify a coordinator serving HTTPS with the cluster's CA. */
  peerTls?: PeerTls
}

export function registerControlRelay (app: FastifyInstance, opts: RelayOptions): { close: () => Promise<void> } {
  const agent = new Agent(withPeerTls({ connections: RELAY_CONNECTIONS, keepAliveTimeout: 10_000 }, opts.peerTls))
  const streams = new Set<RelayedStream>()
  const relay = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => await relayTo(agent, opts, streams, request, reply)
  for (const r of RELAYED_ROUTES) app.route({ method: r.method, url: r.url, ...documented(r.schema), handler: relay })
  app.get(DASHBOARD.page, { exposeHeadRoute: false }, relay)
  app.get(`${DASHBOARD.page}/*`, { exposeHeadRoute: false }, relay)
  // fastify's close waits for open answers, and an event stream never ends by itself: end
  // each with the dashboard's `bye` (the page reconnects, to another router if need be).
  app.addHook('preClose', (done) => {
    for (const s of streams) s.bye()
    done()
  })
  return { close: async () => { await agent.close() } }
}

interface RelayedStream { bye: () => void }

/** The coordinator's answer piped to the client; an event stream is registered in `streams` while it runs. */
function pipeAnswer (res: Dispatcher.ResponseData, reply: FastifyReply, streams: Set<RelayedStream>): void {
  const raw = reply.raw
  raw.writeHead(res.statusCode, reply.getHeaders() as Record<string, string>)
  const stream: RelayedStream = {
    bye: () => {
      res.body.destroy()
      raw.end(`event: ${DASHBOARD_EVENTS.bye}\ndata: ${JSON.stringify({ reason: 'closing' })}\n\n`)
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

async function relayTo (agent: Dispatcher, opts: RelayOptions, streams: Set<RelayedStream>, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  // Unknown between two polls of the leader key (the old leader's lease ran out before the
  // new one campaigned): ask again now rather than refuse a call a leader could answer.
  const target = opts.coordinatorUrl() ?? await opts.refreshCoordinator()
  if (target === undefined) throw new ShardKvError('unavailable', 'no coordinator is known yet: the control plane is unreachable from this router')
  const headers: Record<string, string> = {}
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const v = request.headers[name]
    if (typeof v === 'string') headers[name] = v
  }
  const body = Buffer.isBuffer(request.body) && request.method !== 'GET' ? request.body : undefined
  const call = async (to: string): Promise<Dispatcher.ResponseData> =>
    await upstream(to + request.url, { method: request.method as Dispatcher.HttpMethod, headers, body, dispatcher: agent, headersTimeout: RELAY_TIMEOUT_MS, bodyTimeout: 0 })
  let res: Dispatcher.ResponseData
  try {
    res = await call(target).catch(async (err: unknown) => {
      // A refused connection sent nothing, so asking the new leader is safe for any method.
      const next = upstreamErrorCode(err) === 'ECONNREFUSED' ? await opts.refreshCoordinator() : undefined
      if (next === undefined || next === target) throw err
      return await call(next)
    })
    const refusal = await refusalOf(res)
    if (refusal !== undefined) {
      // A coordinator standing by changed nothing (not_leader): ask whoever leads now, for any method.
      const next = refusal.standby ? await opts.refreshCoordinator() : undefined
      if (next === undefined || next === target) return await reply.code(res.statusCode).type('application/json').send(refusal.text)
      res = await call(next)
    }
  } catch (err) {
    const maybeApplied = request.method !== 'GET'
    throw new ShardKvError('unavailable', `the coordinator did not answer (${describeUpstreamError(err)})${maybeApplied ? ': the call may or may not have been applied; read the cluster view before repeating it' : ''}`)
  }
  // The client went away (a dashboard tab closed): stop reading the coordinator's stream.
  reply.raw.on('close', () => { res.body.destroy() })
  void reply.code(res.statusCode)
  for (const name of RELAYED_ANSWER_HEADERS) {
    const v = res.headers[name]
    if (typeof v === 'string') void reply.header(name, v)
  }
  if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    pipeAnswer(res, reply.hijack(), streams)
    return reply
  }
  return await reply.send(res.body)
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
