import { setTimeout as sleep } from 'node:timers/promises'
import type { Dispatcher } from 'undici'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import { jsonRequest } from '../src/client/http'
import { peerUrlOf, validateMap, type ClusterMap, type PeerHealth } from '../src/membership/map'
import { RING_DEFAULTS } from '../src/ring/ring'
import { RoutingTable } from '../src/membership/routing-table'
import { CONTROL_ANSWER_MAX_BYTES, CLUSTER_VIEW_MAX_BYTES } from '../src/protocol/limits'
import { HEALTH_PATH, INTERNAL_COORDINATOR, MAP_FOLLOW_MAX_WAIT_MS, type WireMapFollow } from '../src/protocol/wire'
import type { Logger } from '../src/log'
import { ShardKvError } from '../src/protocol/errors'

/**
 * How a router knows the map: the data plane's one view of the control plane (the
 * router never holds the coordinator's objects). Tables only move forward: a map older
 * than the one held is ignored, so a slow answer cannot route by a replaced map.
 */
export interface MapFollower {
  /** The routing table of the newest map known; an empty one (every key 503) before the first. */
  table: () => RoutingTable
  /** The table that replaces the current one past epoch `after`, or undefined after `waitMs` (or at shutdown). */
  newer: (after: number, waitMs: number) => Promise<RoutingTable | undefined>
  /** Answers every pending `newer` with undefined: a closing router must not hold connections open. */
  release: () => void
  /** Calls `listener` once, when the table is next replaced; returns what cancels it (see FollowedTable.onceChanged). */
  onceChanged: (listener: () => void) => () => void
  /** The client URL of the coordinator that acts (admin calls are relayed there), when known. */
  coordinatorUrl: () => string | undefined
  /** Asks again who acts (after that coordinator refused a connection); resolves with the answer. */
  refreshCoordinator: () => Promise<string | undefined>
  /** True when the acting coordinator is elected among several (etcd), false for the one named coordinator. */
  readonly electedLeader: boolean
  /** Calls `listener` with the new URL each time another coordinator is found acting; returns what cancels it. */
  onCoordinatorChange: (listener: (url: string) => void) => () => void
  start: () => void
  /** The router listens at `url`: where the map source lists routers (etcd), it registers there. */
  announce: (url: string) => void
  /** Resolves once a map has arrived, or after `timeoutMs` without one (false). */
  firstMap: (timeoutMs: number) => Promise<boolean>
  close: () => Promise<void>
}

const EMPTY_MAP: ClusterMap = { epoch: 0, ring: RING_DEFAULTS, groups: [] }
const FIRST_BACKOFF_MS = 100
const MAX_BACKOFF_MS = 2000
/** How long past the coordinator's longest hold an answer may take before the follow is retried. */
const FOLLOW_SLACK_MS = 5000
/** The hold asked for before the router listens (see followOnce). */
const UNNAMED_WAIT_MS = 500
/** Direct clients holding a map follow open on one router at once (each is one idle connection). */
const MAX_MAP_WAITERS = 1024

/** Holds the newest table, and answers those waiting for the next one; shared by every follower kind. */
export class FollowedTable {
  private current = new RoutingTable(EMPTY_MAP)
  private readonly waiters = new Set<(table: RoutingTable | undefined) => void>()
  private readonly changeListeners = new Set<() => void>()

  get table (): RoutingTable {
    return this.current
  }

  /** Resolves once a map is held (true), or after `timeoutMs`, or once `stopped()` (false). */
  async first (timeoutMs: number, stopped: () => boolean): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (this.current.epoch === 0 && !stopped() && Date.now() < deadline) await sleep(20)
    return this.current.epoch > 0
  }

  /** See MapFollower.newer; at most MAX_MAP_WAITERS wait at once (past that: unavailable). */
  async newer (after: number, waitMs: number): Promise<RoutingTable | undefined> {
    if (this.current.epoch > after) return this.current
    if (waitMs <= 0) return undefined
    if (this.waiters.size >= MAX_MAP_WAITERS) throw new ShardKvError('unavailable', `${MAX_MAP_WAITERS} clients already follow this router's map; ask again later`)
    return await new Promise((resolve) => {
      const answer = (table: RoutingTable | undefined): void => {
        clearTimeout(timer)
        this.waiters.delete(answer)
        resolve(table)
      }
      const timer = setTimeout(() => answer(undefined), waitMs)
      this.waiters.add(answer)
    })
  }

  release (): void {
    for (const answer of [...this.waiters]) answer(undefined)
  }

  /**
   * For the forwarder's retries (a request waiting out a failover wakes when the new map
   * arrives): uncapped, unlike `newer`, because each listener is one request's back-off
   * of at most MAX_BACKOFF_MS that cancels it as it ends.
   */
  onceChanged (listener: () => void): () => void {
    const once = (): void => {
      this.changeListeners.delete(once)
      listener()
    }
    this.changeListeners.add(once)
    return () => { this.changeListeners.delete(once) }
  }

  /** Adopts `raw` when it is a valid map newer than the one held; true when adopted. */
  offer (raw: unknown): boolean {
    const map = validateMap(raw)
    if (map.epoch <= this.current.epoch) return false
    this.current = new RoutingTable(map)
    for (const answer of [...this.waiters]) answer(this.current)
    for (const changed of [...this.changeListeners]) changed()
    return true
  }
}

/**
 * What every follower does with the map it holds, however it learns of newer ones: route
 * by it, answer waits for a newer one, wake retries when it changes, and adopt a newer
 * one (logged). Subclasses feed `adopt` and set `stopped` when they close.
 */
export abstract class HeldMapFollower {
  private readonly held = new FollowedTable()
  protected stopped = false

  table (): RoutingTable {
    return this.held.table
  }

  async newer (after: number, waitMs: number): Promise<RoutingTable | undefined> {
    return await this.held.newer(after, waitMs)
  }

  release (): void {
    this.held.release()
  }

  onceChanged (listener: () => void): () => void {
    return this.held.onceChanged(listener)
  }

  async firstMap (timeoutMs: number): Promise<boolean> {
    return await this.held.first(timeoutMs, () => this.stopped)
  }

  /** Offers `raw` to the held table; logs when it was newer and adopted. */
  protected adopt (raw: unknown, log: Logger): void {
    const before = this.held.table.epoch
    if (this.held.offer(raw)) log.info({ event: 'map-followed', epoch: this.held.table.epoch, previousEpoch: before }, `routing by map epoch ${this.held.table.epoch}`)
  }
}

/**
 * Follows the map a coordinator publishes (the file registry: one coordinator) with a
 * long poll on its peer listener, which answers the moment a newer map is published.
 * The peer listener is found in the coordinator's /healthz, as it finds shard nodes'.
 */
export class CoordinatorFollower extends HeldMapFollower implements MapFollower {
  private readonly dispatcher: Dispatcher
  private loop: Promise<void> | undefined
  private failures = 0

  constructor (private readonly opts: { coordinator: string, self: () => string | undefined, credentials: PeerCredentials, log: Logger }) {
    super()
    this.dispatcher = peerDispatcher(opts.credentials, { connections: 2, keepAliveTimeout: MAP_FOLLOW_MAX_WAIT_MS + FOLLOW_SLACK_MS })
  }

  coordinatorUrl (): string {
    return this.opts.coordinator
  }

  /** One coordinator, at one URL: nothing to ask. */
  async refreshCoordinator (): Promise<string> {
    return this.opts.coordinator
  }

  readonly electedLeader = false

  /** One coordinator, at one URL: it never changes. */
  onCoordinatorChange (): () => void {
    return () => {}
  }

  /** Routers name themselves in every follow (see followOnce): nothing to register. */
  announce (): void {}

  start (): void {
    this.loop ??= this.follow()
  }

  async close (): Promise<void> {
    this.stopped = true
    await this.dispatcher.destroy().catch(() => undefined)
    await this.loop
  }

  private async follow (): Promise<void> {
    let peer: string | undefined
    while (!this.stopped) {
      try {
        peer ??= await this.peerUrl()
        await this.followOnce(peer)
        this.failures = 0
      } catch (err) {
        if (this.stopped) return
        peer = undefined
        this.failures++
        if (this.failures === 1 || this.failures % 20 === 0) {
          this.opts.log.warn({ event: 'map-follow-failed', coordinator: this.opts.coordinator, failures: this.failures, err: (err as Error).message }, 'cannot follow the coordinator\'s map; routing by the last one known')
        }
        await sleep(Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.min(5, this.failures - 1)))
      }
    }
  }

  private async peerUrl (): Promise<string> {
    const res = await jsonRequest<PeerHealth>(this.opts.coordinator + HEALTH_PATH, { dispatcher: this.dispatcher, timeoutMs: 5000, maxBytes: CONTROL_ANSWER_MAX_BYTES })
    return peerUrlOf(this.opts.coordinator, res.body ?? {})
  }

  private async followOnce (peer: string): Promise<void> {
    const self = this.opts.self()
    // Until the router listens it cannot name itself: ask again soon, so that the
    // coordinator learns this router (for the dashboard's traffic) without waiting a whole hold.
    const wait = self === undefined ? UNNAMED_WAIT_MS : MAP_FOLLOW_MAX_WAIT_MS
    const query = `?after=${this.table().epoch}&wait=${wait}${self !== undefined ? `&router=${encodeURIComponent(self)}` : ''}`
    const res = await jsonRequest<WireMapFollow | undefined>(peer + INTERNAL_COORDINATOR.mapFollow + query,
      { dispatcher: this.dispatcher, timeoutMs: MAP_FOLLOW_MAX_WAIT_MS + FOLLOW_SLACK_MS, maxBytes: CLUSTER_VIEW_MAX_BYTES })
    if (res.status === 204 || res.body === undefined) return
    this.adopt(res.body.map, this.opts.log)
  }
}
