import type { FastifyInstance } from 'fastify'
import type { KvStore } from '../src/storage/store'
import type { FeedEntry } from '../src/storage/feed'
import { INTERNAL } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { formatEtag } from '../src/protocol/preconditions'
import { judgeFeedCursor, type WireFeedEvent, type WireFeedReply } from '../src/protocol/watch'
import { integer } from '../src/http/json-body'
import type { OwnershipCache } from './ownership-cache'
import { servingView } from './serving'

/**
 * `GET /internal/feed` (peer API): a group primary's change feed for routers' watch
 * streams (router/watch-routes.ts). Only the primary answers, and only up to `durable()`
 * — the group's replicated position — so an entry it answers is on every in-sync replica
 * and survives any failover (src/protocol/watch.ts). The prefix is applied here, but
 * `next` is the last entry examined, so a cursor moves on past changes it filtered out.
 */

export interface FeedApiContext {
  store: KvStore
  ownership: OwnershipCache
  /** The highest seq on every replica the primary waits for (its own position without replicas). */
  durable: () => number
}

/** Most entries one answer examines. */
const MAX_LIMIT = 2000

function toEvent (e: FeedEntry): WireFeedEvent {
  const ev: WireFeedEvent = { seq: e.seq, key: e.key, op: e.deleted ? 'delete' : 'put', etag: formatEtag(e.version) }
  if (!e.deleted) ev.contentType = e.contentType
  if (e.reason !== null) ev.reason = e.reason
  return ev
}

export function registerFeedApi (app: FastifyInstance, ctx: FeedApiContext): void {
  const { store, ownership } = ctx

  app.get(INTERNAL.feed, (request, reply) => {
    const q = request.query as Record<string, unknown>
    const view = servingView(store, ownership)
    const prefix = typeof q.prefix === 'string' ? q.prefix : ''
    const limit = integer(q.limit === undefined ? undefined : Number(q.limit), 'limit', 1, MAX_LIMIT, 500)
    const storePosition = store.position()
    const durable = view.peers.length === 0 ? storePosition : Math.min(ctx.durable(), storePosition)
    const floor = store.feed.floor()
    const answer: WireFeedReply = { group: view.group ?? '', term: view.term, position: durable, stored: storePosition, floor, events: [], next: durable }
    if (q.after === undefined) return reply.send(answer)
    const after = integer(Number(q.after), 'after', 0, Number.MAX_SAFE_INTEGER)
    if (judgeFeedCursor(after, floor, storePosition) === 'compacted') {
      throw new ShardKvError('cursor_compacted', `group ${answer.group} holds its change feed after seq ${floor} up to ${storePosition}, not after ${after}`, { floor, position: durable, term: view.term, group: answer.group })
    }
    const entries = store.feed.range(after, durable, limit)
    answer.next = entries.length === limit ? (entries[entries.length - 1] as FeedEntry).seq : Math.max(after, durable)
    answer.events = entries.filter((e) => e.key.startsWith(prefix)).map(toEvent)
    return reply.send(answer)
  })
}
