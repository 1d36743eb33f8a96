import type { Dispatcher } from 'undici'
import type { Logger } from '../src/log'
import type { KvStore } from '../src/storage/store'
import type { Ownership } from '../src/membership/ownership'
import { INTERNAL_REPLICATION, type WireInSyncChange } from '../src/protocol/wire'
import { replicatedPosition, type ReplicaAck } from '../src/replication/policy'
import type { Registry } from 'prom-client'
import { jsonRequest } from '../src/client/http'
import { changeToWire, type WireShipment, type WireShipmentAnswer } from '../src/protocol/log-codec'
import { START, answered, failed, nextStep, rewound, shipped, type ShipWindow } from '../src/replication/ship-window'
import { ShipStream, createStreamMetrics, isConflict, type StreamMetrics } from './ship-stream'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import { SHIPMENT_MAX_VALUE_BYTES } from '../src/protocol/limits'

/**
 * Runs in a primary node's supervisor: ships the change log (rows by seq) to every
 * replica of the group as a pipelined stream — up to --replication-window shipments in
 * flight per replica, each continuing where the previous sent one ended (the window's
 * bookkeeping: src/replication/ship-window.ts; the wire: ship-stream.ts) — and broadcasts
 * to the workers the position every replica of the ack set has answered as durably applied.
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
  /** Most shipments in flight per replica (--replication-window). */
  window: number
  replicaTimeoutMs: number
  credentials: PeerCredentials
  /** Where the stream's metrics are registered (the node's /metrics); none when absent. */
  registry?: Registry
}


const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** How long after an in-sync ask the primary asks again while the map does not list the replica. */
const IN_SYNC_RETRY_MS = 2000

class ReplicaLink implements ReplicaAck {
  /** The stream's bookkeeping (src/replication/ship-window.ts). */
  win: ShipWindow = START
  /** The failure that broke the stream, until it is rewound. */
  failure: unknown
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

  /** What the ack set waits on: only ever a position this replica answered. */
  get acked (): number {
    return this.win.acked
  }

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
  /** Probes and in-sync asks; shipments go over `stream`. */
  private readonly agent: Dispatcher
  private readonly stream: ShipStream
  private readonly metrics: StreamMetrics
  private replicated = -1
  private stopped = false
  private turnView: ShipperView | undefined

  constructor (private readonly opts: ShipperOptions) {
    this.agent = peerDispatcher(opts.credentials, { connections: 2, keepAliveTimeout: 30_000 })
    this.stream = new ShipStream(opts.credentials, opts.window)
    this.metrics = createStreamMetrics(opts.registry, () => [...this.links.values()].reduce((n, l) => n + l.win.inFlight, 0))
  }

  /**
   * The installed map as of this turn of the event loop: read once (three SQLite reads)
   * and kept until the running synchronous stretch and its microtasks end, so a commit's
   * kick, the shipments it sends and the answers parsed together share one read (the
   * profile in docs/benchmarks.md put these reads at a sizeable share of a shipment's
   * cost). A map install reaches this process as a later event, so nothing is staler
   * than one turn.
   */
  private view (): ShipperView {
    if (this.turnView === undefined) {
      this.turnView = this.opts.view()
      queueMicrotask(() => { this.turnView = undefined })
    }
    return this.turnView
  }

  /** Where a replica takes shipments: its peer listener, else its data URL. */
  private target (link: ReplicaLink): string {
    return this.view().ownership.peers.find((p) => p.url === link.url)?.peer ?? link.url
  }

  /** Reconciles the links with the installed map (call on every install). */
  refresh (): void {
    this.turnView = undefined
    const { ownership } = this.view()
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

  status (): Array<{ url: string, acked: number, sent: number, inFlight: number, inAckSet: boolean, failing: boolean }> {
    const set = this.ackSet()
    return [...this.links.values()].map((l) => ({ url: l.url, acked: l.acked, sent: l.win.sent, inFlight: l.win.inFlight, inAckSet: set.has(l.url), failing: l.failingSince !== undefined }))
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const link of this.links.values()) { link.running = false; link.kick() }
    await Promise.all([this.agent.close(), this.stream.close()])
  }

  private ackSet (): Set<string> {
    const { ownership } = this.view()
    const set = new Set<string>()
    for (const link of this.links.values()) {
      const inMap = ownership.peers.find((p) => p.url === link.url)?.inSync === true
      if ((inMap && !link.dropped) || link.pending) set.add(link.url)
    }
    return set
  }

  private recompute (): void {
    const { ownership } = this.view()
    if (ownership.role !== 'primary') return
    const position = replicatedPosition(this.opts.store.position(), [...this.links.values()], this.ackSet())
    if (position > this.replicated) {
      this.replicated = position
      this.opts.broadcast(position)
    }
  }

  /**
   * One replica's stream: ship while the window has room, wait for answers when it is
   * full, and after a failure let the in-flight shipments settle, back off (unless the
   * replica only said where it stands), probe and go on from its answer.
   */
  private async pump (link: ReplicaLink): Promise<void> {
    while (link.running && !this.stopped) {
      const local = this.opts.store.position()
      const step = nextStep(link.win, local, this.opts.window)
      if (step.kind === 'ship') {
        try {
          this.ship(link, step.from)
        } catch (err) {
          // Not sent (the log could not be read): a failed shipment all the same.
          link.failure = err
          link.win = failed(shipped(link.win, link.win.sent))
        }
        continue
      }
      if (step.kind === 'wait') {
        await link.idle(200)
        continue
      }
      if (step.kind === 'idle') {
        this.considerInSync(link, local)
        await link.idle(200)
        continue
      }
      await this.rewind(link)
      this.recompute()
    }
  }

  /** Sends the shipment that continues at `from` without waiting for its answer. */
  private ship (link: ReplicaLink, from: number): void {
    const { ownership, self } = this.view()
    // Rows and applied-request records up to `to`, read in one snapshot (store.logWindow).
    const window = this.opts.store.logWindow(from, this.opts.batchRows, SHIPMENT_MAX_VALUE_BYTES)
    const body: WireShipment = {
      group: ownership.group ?? '',
      term: ownership.term,
      ...(self !== undefined ? { sender: self } : {}),
      from,
      to: window.to,
      rows: window.rows.map(changeToWire),
      requests: window.requests,
      floor: window.floor,
      feed: window.feed,
      feedFloor: window.feedFloor
    }
    link.win = shipped(link.win, window.to)
    this.metrics.shipments.inc()
    this.metrics.inFlightAtSend.observe(link.win.inFlight)
    this.stream.post(this.target(link) + INTERNAL_REPLICATION.apply, body, this.opts.replicaTimeoutMs).then((position) => {
      link.win = answered(link.win, position)
      link.failingSince = undefined
      this.recompute()
      link.kick()
    }, (err: unknown) => {
      // The first failure decides how the stream restarts; later ones are its echo (the
      // shipments behind it continue from a position the replica never reached).
      if (!link.win.broken) link.failure = err
      link.win = failed(link.win)
      link.kick()
    })
  }

  /**
   * Restarts a stream from where the replica stands (nothing in flight): at the start,
   * and after a failure — at once when the replica answered 409 (a gap or a resync: it
   * told us where it stands), after a back-off otherwise.
   */
  private async rewind (link: ReplicaLink): Promise<void> {
    const failure = link.failure
    link.failure = undefined
    const answeredConflict = failure !== undefined && isConflict(failure)
    if (failure !== undefined) this.metrics.rewinds.inc({ reason: answeredConflict ? 'conflict' : 'error' })
    if (failure !== undefined && !answeredConflict) {
      await this.failing(link, failure)
      if (!link.running || this.stopped) return
    }
    const where = await this.probe(link)
    if (where instanceof Error) {
      await this.failing(link, where)
      return
    }
    link.win = rewound(link.win, where)
    // A replica that answered the probe after a 409 is reachable: as before pipelining, a
    // failure that stands is one of transport (errors, timeouts), which the probe does not clear.
    if (failure === undefined || answeredConflict) link.failingSince = undefined
  }

  /** A shipment or probe failed: note since when, consider dropping the replica, back off. */
  private async failing (link: ReplicaLink, err: unknown): Promise<void> {
    if (link.failingSince === undefined) {
      link.failingSince = Date.now()
      this.opts.log.warn({ event: 'replica-unreachable', replica: link.url, err: (err as Error).message }, 'cannot ship to replica')
    }
    await this.considerDrop(link)
    await sleep(100)
  }

  /** Asks a replica where it stands (an empty shipment from -1). */
  private async probe (link: ReplicaLink): Promise<number | Error> {
    const { ownership, self } = this.view()
    try {
      const res = await jsonRequest<WireShipmentAnswer>(this.target(link) + INTERNAL_REPLICATION.apply, {
        method: 'POST', body: { group: ownership.group ?? '', term: ownership.term, sender: self, from: -1, to: -1, rows: [] }, dispatcher: this.agent, timeoutMs: this.opts.replicaTimeoutMs
      })
      return res.body.position
    } catch (err) {
      return err as Error
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
    const { ownership, coordinator } = this.view()
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
    const { coordinator } = this.view()
    if (coordinator === undefined) return
    if (await this.askCoordinator(coordinator, link, false)) {
      link.pending = false
      link.dropped = true
      this.recompute()
    }
  }

  private async askCoordinator (coordinator: string, link: ReplicaLink, inSync: boolean): Promise<boolean> {
    const { ownership, self } = this.view()
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
