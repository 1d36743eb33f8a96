import { PassThrough } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { Logger } from '../src/log'
import type { RoutingTable } from '../src/membership/routing-table'
import type { PeerCredentials } from '../src/auth/peer'
import { authorizeKey, principalName } from '../src/auth/client-guard'
import { ShardKvError } from '../src/protocol/errors'
import { Counter, Gauge, type Registry } from 'prom-client'
import { METRIC_PREFIX, WATCH_PATH } from '../src/protocol/wire'
import { decodeResumePoint, type ResumePoint, type StreamEndReason } from '../src/protocol/watch'
import { WATCH_SCHEMA } from '../src/protocol/schemas'
import { documented } from '../src/http/openapi'
import { FeedClient } from './watch-feed-client'
import { WatchStream } from './watch-stream'

/**
 * `GET /watch?prefix=<p>&since=<cursor>`: change streams (src/protocol/watch.ts has the
 * guarantees, router/watch-stream.ts the loop). The router reads the map only through
 * `table` (nodes' peer listeners included), and the nodes' feeds only through their peer
 * API, so the route depends on nothing else of the router.
 */

export interface WatchRoutesOptions {
  /** The router's metrics registry: open streams, events sent and streams ended are counted there. */
  registry: Registry
  table: () => RoutingTable
  credentials: PeerCredentials
  log: Logger
  /** Open streams one token (or, without tokens, all anonymous clients together) may hold (--watch-max-streams-per-token). */
  maxStreamsPerToken: number
  /** Bytes one stream may have waiting for its client (--watch-stream-buffer-bytes). */
  bufferBytes: number
  /** The largest value (--max-value-bytes): what one event's value may weigh. */
  maxValueBytes: number
}

const POLL_MS = 100
const PROGRESS_MS = 2000
const ANONYMOUS = ''

/** Where the map says a node serves its internal API, when apart from its data URL. */
export function peerInMap (table: RoutingTable, url: string): string | undefined {
  for (const g of table.map.groups) for (const n of g.nodes) if (n.url === url) return n.peer
  return undefined
}

/** Whether one more stream fits a token's allowance. */
export function admitStream (open: number, max: number): boolean {
  return open < max
}

/** `values=1` asks for put events with their values; anything but absent, 0 or 1 is a 400. */
export function wantsValues (values: unknown): boolean {
  if (values === undefined || values === '0') return false
  if (values === '1') return true
  throw new ShardKvError('invalid_request', 'values must be 1 or 0')
}

/** The cursor a request resumes from: `since` wins over Last-Event-ID; none: start from now. */
export function resumeCursor (since: unknown, lastEventId: unknown): ResumePoint | undefined {
  const text = typeof since === 'string' && since !== '' ? since : typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : undefined
  if (since !== undefined && typeof since !== 'string') throw new ShardKvError('invalid_request', 'since must be one cursor')
  return text === undefined ? undefined : decodeResumePoint(text)
}

export function registerWatchRoutes (app: FastifyInstance, o: WatchRoutesOptions): void {
  const feeds = new FeedClient(o.credentials, { peerOf: (url) => peerInMap(o.table(), url), maxValueBytes: o.maxValueBytes })
  const open = new Map<string, number>()
  const streams = new Set<WatchStream>()
  void new Gauge({ name: `${METRIC_PREFIX}router_watch_streams`, help: 'Open watch streams.', registers: [o.registry], collect () { this.set(streams.size) } })
  const sent = new Counter({ name: `${METRIC_PREFIX}router_watch_events_total`, help: 'Change events sent on watch streams (all streams).', registers: [o.registry] })
  const ended = new Counter({ name: `${METRIC_PREFIX}router_watch_streams_ended_total`, help: 'Watch streams ended, by reason (client_closed, cursor_compacted, stream_overflow, router_closing, failed).', labelNames: ['reason'], registers: [o.registry] })
  void new Gauge({ name: `${METRIC_PREFIX}router_watch_max_streams_per_token`, help: 'Open watch streams one token may hold (--watch-max-streams-per-token).', registers: [o.registry] }).set(o.maxStreamsPerToken)
  void new Gauge({ name: `${METRIC_PREFIX}router_watch_stream_buffer_bytes`, help: 'Bytes one watch stream may have waiting for its client (--watch-stream-buffer-bytes).', registers: [o.registry] }).set(o.bufferBytes)

  // No HEAD twin: it would open a stream to send nothing.
  app.get(WATCH_PATH, { exposeHeadRoute: false, ...documented(WATCH_SCHEMA) }, async (request, reply) => {
    const q = request.query as Record<string, unknown>
    if (q.prefix !== undefined && typeof q.prefix !== 'string') throw new ShardKvError('invalid_request', 'prefix must be one string')
    const prefix = q.prefix ?? ''
    authorizeKey(request.principal, 'read', prefix)
    const since = resumeCursor(q.since, request.headers['last-event-id'])
    const values = wantsValues(q.values)
    const who = principalName(request.principal) ?? ANONYMOUS
    const count = open.get(who) ?? 0
    const max = o.maxStreamsPerToken
    if (!admitStream(count, max)) throw new ShardKvError('too_many_streams', `at most ${max} watch streams per token; close one first`, { max })
    open.set(who, count + 1)
    const out = new PassThrough()
    const stream = new WatchStream({ out, table: o.table, feeds, prefix, since, values, bufferBytes: o.bufferBytes, pollMs: POLL_MS, progressMs: PROGRESS_MS, onEvents: (n) => { sent.inc(n) } })
    streams.add(stream)
    reply.raw.on('close', () => { stream.close() })
    void stream.run().catch((err: unknown) => {
      o.log.error({ err, event: 'watch-failed', prefix }, 'a watch stream failed')
    }).finally(() => {
      const reason: StreamEndReason = stream.endReason ?? 'failed'
      ended.inc({ reason })
      streams.delete(stream)
      const left = (open.get(who) ?? 1) - 1
      if (left === 0) open.delete(who)
      else open.set(who, left)
      if (!out.writableEnded) out.end()
    })
    return await reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      .send(out)
  })

  // The router's close waits for open responses: end the streams first.
  app.addHook('preClose', (done) => {
    for (const s of streams) s.close('router_closing')
    done()
  })
  app.addHook('onClose', async () => { await feeds.close() })
}
