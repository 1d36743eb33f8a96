import { CLUSTER_VIEW_MAX_BYTES } from '../protocol/limits'
import { validateMap } from '../membership/map'
import { RoutingTable } from '../membership/routing-table'
import { CLUSTER_PATH } from '../protocol/wire'
import { toKvError, UnavailableError } from './errors'
import { ShardKvError } from '../protocol/errors'
import { jsonRequest } from './http'
import type { Dispatcher } from 'undici'
import { MapFollow } from './map-follow'

/** A map a rebalance will replace soon: a handover, or a group being drained. */
function unsettled (table: RoutingTable): boolean {
  return table.map.handover !== undefined || table.map.groups.some((g) => g.state === 'draining')
}

/** How often an unsettled map is refetched while the router's map cannot be followed (see now()). */
const HANDOVER_POLL_MS = 500

/**
 * The direct client's copy of the cluster map: fetched from the router's GET /cluster, then
 * followed (MapFollow: a long poll on the router's own map) so that changes arrive unasked.
 *
 * Refreshes are single-flight: however many calls hit a 421 or a dead primary at once,
 * one /cluster request is in flight and all of them wait for its answer. A table only
 * moves forward (a response with an older epoch than the one held is ignored), so a
 * slow answer cannot route a call by a map that was already replaced.
 */
export class MapSource {
  private table: RoutingTable | undefined
  private inflight: Promise<RoutingTable> | undefined
  /** /cluster fetches made (for stats and tests). */
  fetches = 0
  /** Maps that arrived by following the router's map (for stats and tests). */
  followed = 0
  private fetchedAt = 0
  private readonly listeners: Array<(table: RoutingTable) => void> = []
  private follow: MapFollow | undefined
  private closed = false

  constructor (private readonly routerUrl: string, private readonly dispatcher: Dispatcher, private readonly timeoutMs: number,
    private readonly headers: Readonly<Record<string, string>> = {}, private readonly ca?: string | Buffer) {}

  /** Stops following the router's map. */
  async close (): Promise<void> {
    this.closed = true
    await this.follow?.close()
  }

  /** The current table, fetching the map on first use. */
  async current (): Promise<RoutingTable> {
    return this.now() ?? await this.refresh(-1)
  }

  /**
   * The current table without waiting (undefined before the first map arrived): the
   * per-request path takes it synchronously rather than through a promise.
   */
  now (): RoutingTable | undefined {
    const table = this.table
    if (table === undefined) return undefined
    // No node tells a direct client that a rebalance settled (the handover map routes every
    // key it sends directly to an owner of both maps): the follow does. While the follow is
    // down, an unsettled map is refetched in the background every so often; until then
    // moving keys keep going through the router, which is correct, just slower. A draining
    // group still in the map is unsettled too: the map that drops it follows.
    if (unsettled(table) && this.follow?.following !== true && this.inflight === undefined && Date.now() - this.fetchedAt > HANDOVER_POLL_MS) {
      this.refresh(table.epoch).catch(() => undefined)
    }
    return table
  }

  /**
   * A table newer than epoch `seen` if one arrived meanwhile; otherwise fetches the map
   * (joining a fetch already in flight). May return a table of the same epoch: the map
   * may not have changed yet (a failover in progress), and the caller backs off.
   */
  async refresh (seen: number): Promise<RoutingTable> {
    if (this.table !== undefined && this.table.epoch > seen) return this.table
    this.inflight ??= this.fetch().finally(() => { this.inflight = undefined })
    return await this.inflight
  }

  /**
   * A map a node sent with its 421. The coordinator installs a new map on every node
   * before it publishes it, so during a rebalance or failover a node may know a newer
   * map than the router serves yet; routing by it is safe (every node checks ownership
   * under its own installed map) and saves waiting for the router. Adopted only when newer.
   */
  offer (raw: unknown): void {
    if (raw === undefined || raw === null) return
    let table: RoutingTable
    try {
      table = new RoutingTable(validateMap(raw))
    } catch {
      return // not a map: the caller refreshes from the router as usual
    }
    if (this.table === undefined || table.epoch > this.table.epoch) this.adopt(table)
  }

  peek (): RoutingTable | undefined {
    return this.table
  }

  /** Calls `listener` with every table that replaces the current one. */
  onChange (listener: (table: RoutingTable) => void): void {
    this.listeners.push(listener)
  }

  private adopt (table: RoutingTable): void {
    if (table === this.table) return
    this.table = table
    if (!this.closed) {
      this.follow ??= new MapFollow(this.routerUrl, {
        headers: this.headers,
        ca: this.ca,
        held: () => this.table?.epoch ?? -1,
        offer: (raw) => {
          const before = this.table
          this.offer(raw)
          if (this.table !== before) this.followed++
        }
      })
    }
    for (const listener of this.listeners) listener(table)
  }

  private async fetch (): Promise<RoutingTable> {
    this.fetches++
    this.fetchedAt = Date.now()
    let table: RoutingTable
    try {
      const res = await jsonRequest<unknown>(this.routerUrl + CLUSTER_PATH, { dispatcher: this.dispatcher, timeoutMs: this.timeoutMs, headers: this.headers, maxBytes: CLUSTER_VIEW_MAX_BYTES })
      // validateMap checks the map's shape and ignores the runtime fields /cluster adds beside it.
      table = new RoutingTable(validateMap(res.body))
    } catch (err) {
      // A refused credential is the caller's to fix, not a passing outage: say so.
      if (err instanceof ShardKvError && (err.code === 'unauthenticated' || err.code === 'forbidden')) throw toKvError(err)
      // Keep routing by the map we have: the router may be restarting while the nodes serve.
      if (this.table !== undefined) return this.table
      throw new UnavailableError('unavailable', `cannot load the cluster map from ${this.routerUrl}: ${(err as Error).message}`)
    }
    const held = this.table
    if (held !== undefined && table.epoch < held.epoch) return held
    this.adopt(table)
    return table
  }
}
