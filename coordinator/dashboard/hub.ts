import { PassThrough, type Readable } from 'node:stream'
import type { ServerResponse } from 'node:http'
import type { Logger } from '../../src/log'
import { ShardKvError } from '../../src/protocol/errors'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { DASHBOARD_EVENTS, type DashboardBye, type DashboardSnapshot, type DashboardTraffic, type DashboardViewer } from '../../src/protocol/dashboard'
import type { OperationLog } from './operations'

/**
 * The dashboard's open event streams and what they are sent. While at least one stream is
 * open, the hub looks at the cluster view every `checkMs` and sends a snapshot to every
 * stream when it changed, and at least every `heartbeatMs`; traffic is sampled every
 * `sampleMs`. With no stream open nothing runs: an unwatched router pays nothing.
 *
 * Streams are bounded (`maxStreams`, then 503) and each lives `lifetimeMs`: then it is sent
 * `bye` and the page opens a new one, authenticated again, so a token revoked by a tokens
 * reload stops seeing data within that time. A page that stops reading is dropped once
 * `maxBufferedBytes` wait for it, rather than buffering without end.
 */

export interface HubOptions {
  view: () => ClusterView
  sampleTraffic: (view: ClusterView) => Promise<DashboardTraffic>
  operations: OperationLog
  log: Logger
  maxStreams?: number
  lifetimeMs?: number
  checkMs?: number
  heartbeatMs?: number
  sampleMs?: number
  maxBufferedBytes?: number
  /** After `bye` the page closes the stream itself; one that does not is cut after this. */
  byeGraceMs?: number
}

interface Stream {
  out: PassThrough
  res: ServerResponse
  timers: NodeJS.Timeout[]
}

export class DashboardHub {
  private readonly streams = new Set<Stream>()
  private readonly maxStreams: number
  private readonly lifetimeMs: number
  private readonly checkMs: number
  private readonly heartbeatMs: number
  private readonly sampleMs: number
  private readonly maxBufferedBytes: number
  private readonly byeGraceMs: number
  private traffic: DashboardTraffic = { router: null, groups: {} }
  private timer: NodeJS.Timeout | undefined
  private sampling = false
  private lastSampleAt = 0
  private lastSentAt = 0
  private lastFingerprint = ''
  private closed = false

  constructor (private readonly opts: HubOptions) {
    this.maxStreams = opts.maxStreams ?? 32
    this.lifetimeMs = opts.lifetimeMs ?? 60_000
    this.checkMs = opts.checkMs ?? 250
    this.heartbeatMs = opts.heartbeatMs ?? 1000
    this.sampleMs = opts.sampleMs ?? 1000
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1024 * 1024
    this.byeGraceMs = opts.byeGraceMs ?? 5000
  }

  get size (): number {
    return this.streams.size
  }

  /** A new stream for `res`'s request: `hello`, then the current snapshot. Throws 503 past the bound or while closing. */
  open (viewer: DashboardViewer, res: ServerResponse): Readable {
    if (this.closed) throw new ShardKvError('unavailable', 'the router is stopping')
    if (this.streams.size >= this.maxStreams) throw new ShardKvError('unavailable', `${this.maxStreams} dashboard streams are open already; close one or try again later`)
    const stream: Stream = { out: new PassThrough(), res, timers: [] }
    this.streams.add(stream)
    // However it ends (the page went away, the bye grace, a dropped slow reader), it is forgotten.
    res.once('close', () => this.forget(stream))
    stream.timers.push(setTimeout(() => this.bye(stream, { reason: 'lifetime' }), this.lifetimeMs).unref())
    this.write(stream, DASHBOARD_EVENTS.hello, JSON.stringify(viewer))
    this.write(stream, DASHBOARD_EVENTS.snapshot, this.snapshotText(this.opts.view()))
    this.schedule()
    return stream.out
  }

  /** Says `bye` to every stream and ends them (the router is stopping: its close waits for open responses). */
  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    for (const s of this.streams) this.bye(s, { reason: 'closing' }, 1000)
  }

  private forget (stream: Stream): void {
    for (const t of stream.timers) clearTimeout(t)
    this.streams.delete(stream)
  }

  private bye (stream: Stream, bye: DashboardBye, graceMs = this.byeGraceMs): void {
    this.write(stream, DASHBOARD_EVENTS.bye, JSON.stringify(bye))
    if (bye.reason === 'closing') stream.out.end()
    // Cut rather than ended when the page does not close it: a stream ended by the router
    // would be timed as one request of a minute in the router's latency histogram.
    stream.timers.push(setTimeout(() => stream.res.destroy(), graceMs).unref())
  }

  private write (stream: Stream, event: string, data: string): void {
    if (stream.out.writableEnded || stream.res.destroyed) return
    if (stream.out.writableLength > this.maxBufferedBytes) {
      this.opts.log.warn({ event: 'dashboard-stream-dropped', buffered: stream.out.writableLength }, 'a dashboard stream is not read; dropping it')
      stream.res.destroy()
      return
    }
    stream.out.write(`event: ${event}\ndata: ${data}\n\n`)
  }

  private schedule (): void {
    if (this.timer !== undefined || this.closed || this.streams.size === 0) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      try {
        this.check()
      } catch (err) {
        this.opts.log.warn({ event: 'dashboard-check-failed', err: (err as Error).message }, 'could not build a dashboard snapshot')
      }
      this.schedule()
    }, this.checkMs)
    this.timer.unref()
  }

  private check (): void {
    const view = this.opts.view()
    this.opts.operations.observe(view)
    const now = Date.now()
    if (!this.sampling && now - this.lastSampleAt >= this.sampleMs) this.sample(view, now)
    const fingerprint = JSON.stringify([stripChecks(view), this.opts.operations.list(), this.traffic])
    if (fingerprint === this.lastFingerprint && now - this.lastSentAt < this.heartbeatMs) return
    this.lastFingerprint = fingerprint
    this.lastSentAt = now
    const text = this.snapshotText(view)
    for (const s of this.streams) this.write(s, DASHBOARD_EVENTS.snapshot, text)
  }

  private sample (view: ClusterView, now: number): void {
    this.sampling = true
    this.lastSampleAt = now
    this.opts.sampleTraffic(view).then(
      (traffic) => { this.traffic = traffic },
      (err: Error) => this.opts.log.warn({ event: 'dashboard-sample-failed', err: err.message }, 'could not sample traffic for the dashboard')
    ).finally(() => { this.sampling = false })
  }

  private snapshotText (view: ClusterView): string {
    const snapshot: DashboardSnapshot = { at: new Date().toISOString(), cluster: view, traffic: this.traffic, operations: this.opts.operations.list() }
    return JSON.stringify(snapshot)
  }
}

/** The view without the health checks' timestamps, which change every check without anything else changing. */
function stripChecks (view: ClusterView): unknown {
  return { ...view, groups: view.groups.map((g) => ({ ...g, nodes: g.nodes.map((n) => ({ ...n, lastCheckAt: null })) })) }
}
