import type { FastifyInstance } from 'fastify'
import type { KvStore } from '../src/storage/store'
import type { FeedEntry } from '../src/storage/feed'
import { INTERNAL } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { formatEtag } from '../src/protocol/preconditions'
import { FEED_VALUE_BUDGET, FEED_VALUES_PARAM, judgeFeedCursor, type WireFeedEvent, type WireFeedReply } from '../src/protocol/watch'
import { integer } from '../src/http/json-body'
import type { OwnershipCache } from './ownership-cache'
import { servingView } from './serving'

/**
 * `GET /internal/feed` (peer API): a group primary's change feed for routers' watch
 * streams (router/watch-routes.ts). Only the primary answers, and only up to `durable()`
 * — the group's replicated position — so an entry it answers is on every in-sync replica
 * and survives any failover (src/protocol/watch.ts). The prefix is applied here, but
 * `next` is the last entry examined, so a cursor moves on past changes it filtered out.
 * With `values=1` a put carries its value when its version is still the key's live one
 * (the feed keeps versions, the table only the last value); the answer then ends early
 * once FEED_VALUE_BUDGET value bytes are in it.
 */

export interface FeedApiContext {
  store: KvStore
  ownership: OwnershipCache
  /** The highest seq on every replica the primary waits for (its own position without replicas). */
  durable: () => number
}

/** Most entries one answer examines. */
const MAX_LIMIT = 2000

export function toEvent (e: FeedEntry): WireFeedEvent {
  const ev: WireFeedEvent = { seq: e.seq, key: e.key, op: e.deleted ? 'delete' : 'put', etag: formatEtag(e.version) }
  if (!e.deleted) ev.contentType = e.contentType
  if (e.reason !== null) ev.reason = e.reason
  return ev
}

/** Adds each put's value while it is the key's live version; past the byte budget, cuts the answer there. */
export function withValues (store: KvStore, answer: WireFeedReply): void {
  const now = Date.now()
  let bytes = 0
  for (let i = 0; i < answer.events.length; i++) {
    const ev = answer.events[i] as WireFeedEvent
    if (ev.op !== 'put') continue
    const live = store.get(ev.key, now)
    if (live === undefined || formatEtag(live.version) !== ev.etag) {
      ev.valueOmitted = 'superseded'
      continue
    }
    // Past the budget the answer ends before this entry (the next read starts with it);
    // the first value always goes, so an answer holds at most max(budget, one value).
    if (bytes > 0 && bytes + live.value.length > FEED_VALUE_BUDGET) {
      answer.events = answer.events.slice(0, i)
      answer.next = ev.seq - 1
      return
    }
    ev.value = live.value.toString('base64')
    bytes += live.value.length
  }
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
    if (q[FEED_VALUES_PARAM] === '1') withValues(store, answer)
    return reply.send(answer)
  })
}
