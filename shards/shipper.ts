import type { Dispatcher } from 'undici'
import type { Logger } from '../src/log'
import type { KvStore } from '../src/storage/store'
import type { Ownership } from '../src/membership/ownership'
import { INTERNAL_REPLICATION, type WireInSyncChange } from '../src/protocol/wire'
import { replicatedPosition, type ReplicaAck } from '../src/replication/policy'
import { jsonRequest } from '../src/client/http'
import { changeToWire, type WireShipment } from '../src/protocol/log-codec'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import { SHIPMENT_MAX_VALUE_BYTES } from '../src/protocol/limits'

/**
 * Runs in a primary node's supervisor: ships the change log (rows by seq) to every
 * replica of the group, one batch in flight per replica, and broadcasts to the
 * workers the position every replica of the ack set has durably applied.
 *
 * The ack set is the map's in-sync replicas plus those this primary asked the
 * coordinator to mark in-sync (it waits for them from the moment it asks). A replica
 * leaves the set only through the coordinator: after `replicaTimeoutMs` of failures
 * the shipper asks the coordinator to drop it, and until that is confirmed writes
 * keep waiting (no write is acknowledged without a replica that may be promoted).
 *
 * Shipments go to a replica's peer listener (`peer ?? url` in the map), name this node
 * as their sender (replicas take them only from the primary in their map), and carry
 * the peer credentials, as do in-sync asks to the coordinator's advertised URL.
 */

export interface ShipperView {
  ownership: Ownership
  coordinator: string | undefined
  /** This node's URL in the installed map: the sender a replica checks a shipment by. */
  self: string | undefined
}

export interface ShipperOptions {
  store: KvStore
  view: () => ShipperView
  log: Logger
  broadcast: (position: number) => void
  batchRows: number
  replicaTimeoutMs: number
  credentials: PeerCredentials
}


const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** How long after an in-sync ask the primary asks again while the map does not list the replica. */
const IN_SYNC_RETRY_MS = 2000

class ReplicaLink implements ReplicaAck {
  acked = -1
  /** Asked the coordinator to mark in-sync: waited for from then on. */
  pending = false
  /** An in-sync ask is in flight. */
  asking = false
  /** When the last in-sync ask went out (an unanswered or refused one is asked again). */
  askedAt = 0
  /** The coordinator confirmed it out of the set; ignore until the map says in-sync again. */
  dropped = false
  failingSince: number | undefined
  running = true
  private wake: (() => void) | undefined

  constructor (readonly url: string) {}

  kick (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  async idle (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.wake = undefined; resolve() }, ms)
      this.wake = () => { clearTimeout(timer); resolve() }
    })
  }
}

export class Shipper {
  private readonly links = new Map<string, ReplicaLink>()
  private readonly agent: Dispatcher
  private replicated = -1
  private stopped = false

  constructor (private readonly opts: ShipperOptions) {
    this.agent = peerDispatcher(opts.credentials, { connections: 2, keepAliveTimeout: 30_000 })
  }

  /** Where a replica takes shipments: its peer listener, else its data URL. */
  private target (link: ReplicaLink): string {
    return this.opts.view().ownership.peers.find((p) => p.url === link.url)?.peer ?? link.url
  }

  /** Reconciles the links with the installed map (call on every install). */
  refresh (): void {
    const { ownership } = this.opts.view()
    const wanted = ownership.role === 'primary' ? ownership.peers.map((p) => p.url) : []
    for (const [url, link] of this.links) {
      if (!wanted.includes(url)) {
        link.running = false
        link.kick()
        this.links.delete(url)
      }
    }
    for (const url of wanted) {
      let link = this.links.get(url)
      if (link === undefined) {
        link = new ReplicaLink(url)
        this.links.set(url, link)
        void this.pump(link)
      }
      if (ownership.peers.find((p) => p.url === url)?.inSync === true) link.dropped = false
    }
    this.recompute()
  }

  /** A worker committed a write: ship it now. */
  kick (): void {
    this.recompute()
    for (const link of this.links.values()) link.kick()
  }

  status (): Array<{ url: string, acked: number, inAckSet: boolean, failing: boolean }> {
    const set = this.ackSet()
    return [...this.links.values()].map((l) => ({ url: l.url, acked: l.acked, inAckSet: set.has(l.url), failing: l.failingSince !== undefined }))
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const link of this.links.values()) { link.running = false; link.kick() }
    await this.agent.close()
  }

  private ackSet (): Set<string> {
    const { ownership } = this.opts.view()
    const set = new Set<string>()
    for (const link of this.links.values()) {
      const inMap = ownership.peers.find((p) => p.url === link.url)?.inSync === true
      if ((inMap && !link.dropped) || link.pending) set.add(link.url)
    }
    return set
  }

  private recompute (): void {
    const { ownership } = this.opts.view()
    if (ownership.role !== 'primary') return
    const position = replicatedPosition(this.opts.store.position(), [...this.links.values()], this.ackSet())
    if (position > this.replicated) {
      this.replicated = position
      this.opts.broadcast(position)
    }
  }

  private async pump (link: ReplicaLink): Promise<void> {
    while (link.running && !this.stopped) {
      const local = this.opts.store.position()
      if (link.acked >= 0 && link.acked >= local) {
        this.considerInSync(link, local)
        await link.idle(200)
        continue
      }
      try {
        await this.shipOnce(link)
        link.failingSince = undefined
      } catch (err) {
        if (link.failingSince === undefined) {
          link.failingSince = Date.now()
          this.opts.log.warn({ event: 'replica-unreachable', replica: link.url, err: (err as Error).message }, 'cannot ship to replica')
        }
        await this.considerDrop(link)
        await sleep(100)
      }
      this.recompute()
    }
  }

  private async shipOnce (link: ReplicaLink): Promise<void> {
    const { ownership, self } = this.opts.view()
    const from = link.acked
    // Rows and applied-request records up to `to`, read in one snapshot (store.logWindow).
    const window = from < 0 ? undefined : this.opts.store.logWindow(from, this.opts.batchRows, SHIPMENT_MAX_VALUE_BYTES)
    const body: WireShipment = {
      group: ownership.group ?? '',
      term: ownership.term,
      ...(self !== undefined ? { sender: self } : {}),
      from,
      to: window?.to ?? -1,
      rows: window?.rows.map(changeToWire) ?? [],
      requests: window?.requests ?? [],
      floor: window?.floor ?? 0,
      feed: window?.feed ?? [],
      feedFloor: window?.feedFloor ?? 0
    }
    try {
      const res = await jsonRequest<{ position: number }>(this.target(link) + INTERNAL_REPLICATION.apply, {
        method: 'POST', body, dispatcher: this.agent, timeoutMs: this.opts.replicaTimeoutMs
      })
      link.acked = res.body.position
    } catch (err) {
      const e = err as { code?: string, details?: { status?: number } }
      // A 409 answer carries where the replica stands (gap, resync) — or that we are fenced.
      if (e.code === 'conflict' || e.details?.status === 409) {
        const where = await this.probe(link)
        if (where !== undefined) {
          link.acked = where
          return
        }
      }
      throw err
    }
  }

  /** Asks a replica where it stands (an empty shipment from -1). */
  private async probe (link: ReplicaLink): Promise<number | undefined> {
    const { ownership, self } = this.opts.view()
    try {
      const res = await jsonRequest<{ position: number }>(this.target(link) + INTERNAL_REPLICATION.apply, {
        method: 'POST', body: { group: ownership.group, term: ownership.term, sender: self, from: -1, to: -1, rows: [] }, dispatcher: this.agent, timeoutMs: this.opts.replicaTimeoutMs
      })
      return res.body.position
    } catch {
      return undefined
    }
  }

  /**
   * A caught-up replica the map does not list as in-sync is asked for — again every
   * IN_SYNC_RETRY_MS while the map still does not list it: an ask that failed (the
   * coordinator was unreachable, or answered late) must not leave the group without a
   * replica it may promote. It stays in the ack set meanwhile (pending): waiting for it
   * is always safe, and the coordinator may have applied an ask whose answer was lost.
   */
  private considerInSync (link: ReplicaLink, local: number): void {
    const { ownership, coordinator } = this.opts.view()
    const inMap = ownership.peers.find((p) => p.url === link.url)?.inSync === true
    if (inMap || link.asking || link.failingSince !== undefined || link.acked < local || coordinator === undefined) return
    if (link.pending && Date.now() - link.askedAt < IN_SYNC_RETRY_MS) return
    if (!link.pending) this.opts.log.info({ event: 'replica-caught-up', replica: link.url, position: link.acked }, 'replica caught up; asking to mark it in-sync')
    link.pending = true
    link.dropped = false
    link.asking = true
    link.askedAt = Date.now()
    void this.askCoordinator(coordinator, link, true).finally(() => { link.asking = false })
  }

  private async considerDrop (link: ReplicaLink): Promise<void> {
    if (link.failingSince === undefined || Date.now() - link.failingSince < this.opts.replicaTimeoutMs) return
    if (!this.ackSet().has(link.url)) return
    const { coordinator } = this.opts.view()
    if (coordinator === undefined) return
    if (await this.askCoordinator(coordinator, link, false)) {
      link.pending = false
      link.dropped = true
      this.recompute()
    }
  }

  private async askCoordinator (coordinator: string, link: ReplicaLink, inSync: boolean): Promise<boolean> {
    const { ownership, self } = this.opts.view()
    // A node outside every group has no in-sync set to change (the coordinator would refuse it).
    if (ownership.group === undefined) return false
    const change: WireInSyncChange = { group: ownership.group, url: link.url, inSync, term: ownership.term, sender: self }
    try {
      await jsonRequest(coordinator + INTERNAL_REPLICATION.inSync, {
        method: 'POST', body: change, dispatcher: this.agent, timeoutMs: 10_000
      })
      this.opts.log.info({ event: inSync ? 'replica-in-sync' : 'replica-dropped', replica: link.url }, inSync ? 'replica marked in-sync' : 'replica dropped from the in-sync set')
      return true
    } catch (err) {
      this.opts.log.warn({ event: 'in-sync-change-failed', replica: link.url, inSync, err: (err as Error).message }, 'the coordinator did not change the in-sync set')
      return false
    }
  }
}
