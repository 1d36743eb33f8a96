import type { FastifyInstance } from 'fastify'
import type { ClusterMap } from '../src/membership/map'
import { ShardKvError } from '../src/protocol/errors'
import { queryInteger } from '../src/http/query-integer'
import { INTERNAL_COORDINATOR, MAP_FOLLOW_MAX_WAIT_MS, type WireMapFollow } from '../src/protocol/wire'

/**
 * The published map as a feed routers follow (file registry; with etcd they watch etcd):
 * a long poll on the coordinator's peer listener, answered the moment a map newer than
 * the router's is published. A router learns a change within one round trip of the
 * publish, without polling, and a router that was away asks with its old epoch and gets
 * the current map at once. Routers name their client URL as they ask, so the dashboard
 * can sum their traffic; at most MAX_ROUTERS are remembered, each for two waits.
 */

const MAX_ROUTERS = 64
const MAX_WAITERS = 1024
const ROUTER_FORGET_MS = 2 * MAP_FOLLOW_MAX_WAIT_MS + 5000

interface Waiter {
  after: number
  answer: (map: ClusterMap | undefined) => void
}

export class MapFeed {
  private readonly waiters = new Set<Waiter>()
  private readonly routers = new Map<string, number>()
  private closed = false

  constructor (private readonly current: () => ClusterMap, private readonly leading: () => boolean) {}

  /** Answers every follower behind `map`. */
  published (map: ClusterMap): void {
    for (const w of this.waiters) if (map.epoch > w.after) w.answer(map)
  }

  /** The client URLs of routers that followed the map lately. */
  routerUrls (): string[] {
    const now = Date.now()
    for (const [url, at] of this.routers) if (now - at > ROUTER_FORGET_MS) this.routers.delete(url)
    return [...this.routers.keys()]
  }

  /** On the peer scope: only peers holding the cluster secret follow the map. */
  register (scope: FastifyInstance): void {
    scope.get(INTERNAL_COORDINATOR.mapFollow, async (request, reply) => {
      const q = request.query as Record<string, unknown>
      const after = queryInteger(q.after, 'after', -1)
      const waitMs = Math.min(MAP_FOLLOW_MAX_WAIT_MS, queryInteger(q.wait, 'wait', MAP_FOLLOW_MAX_WAIT_MS))
      this.remember(q.router)
      const map = await this.next(after, waitMs)
      // Answered because the coordinator closes: Node closes the connections idle when its
      // server closes, not this one (its answer was still to come), which would then stay
      // kept alive and idle — and hold the close — for the idle timeout (65 s).
      if (this.closed) void reply.header('connection', 'close')
      if (map === undefined) return await reply.code(204).send()
      const body: WireMapFollow = { map, leader: this.leading() }
      return await reply.send(body)
    })
  }

  /** Ends every open follow (204): a closing coordinator must not hold its listener open for 30 s. */
  close (): void {
    this.closed = true
    for (const w of this.waiters) w.answer(undefined)
  }

  private async next (after: number, waitMs: number): Promise<ClusterMap | undefined> {
    const map = this.current()
    if (map.epoch > after) return map
    if (this.closed || waitMs === 0) return undefined
    if (this.waiters.size >= MAX_WAITERS) throw new ShardKvError('unavailable', 'too many routers are following the map')
    return await new Promise((resolve) => {
      const timer = setTimeout(() => waiter.answer(undefined), waitMs)
      const waiter: Waiter = {
        after,
        answer: (m) => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          resolve(m)
        }
      }
      this.waiters.add(waiter)
    })
  }

  private remember (router: unknown): void {
    if (typeof router !== 'string' || router.length > 512 || !/^https?:\/\/[^\s/?#]+$/.test(router)) return
    if (!this.routers.has(router) && this.routers.size >= MAX_ROUTERS) return
    this.routers.set(router, Date.now())
  }
}
