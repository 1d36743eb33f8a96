import { setTimeout as sleep } from 'node:timers/promises'
import type { Socket } from 'node:net'
import { buildConnector, Client } from '../http/undici'
import { CLUSTER_MAP_PATH, MAP_FOLLOW_MAX_WAIT_MS } from '../protocol/wire'
import { CLUSTER_VIEW_MAX_BYTES } from '../protocol/limits'
import { ShardKvError } from '../protocol/errors'
import { jsonRequest } from './http'

/**
 * A direct client's follow of its router's map (`GET /cluster/map?after=&wait=`): one long
 * poll always open, so a settled rebalance or a failover reaches the client within a round
 * trip of its router learning it, and nothing polls. Its socket is unref'd: a follow never
 * keeps a process alive that forgot to close its client. A router that does not serve the
 * route (404: an older version) ends the follow; the caller falls back to refetching.
 */

const FIRST_BACKOFF_MS = 250
const MAX_BACKOFF_MS = 5000
/** How long past the router's longest hold an answer may take before the poll is abandoned and asked again. */
const SLACK_MS = 10_000

export class MapFollow {
  private readonly client: Client
  private readonly origin: string
  private closed = false
  private healthy = false
  private readonly loop: Promise<void>

  constructor (origin: string, private readonly opts: {
    headers: Readonly<Record<string, string>>
    ca?: string | Buffer
    /** The epoch held now: the follow asks for anything newer. */
    held: () => number
    /** A map newer than held (raw JSON: validated by the caller). */
    offer: (raw: unknown) => void
  }) {
    this.origin = origin
    const connect = buildConnector(opts.ca === undefined ? {} : { ca: opts.ca })
    this.client = new Client(origin, {
      pipelining: 1,
      connect: (options, callback) => connect(options, (err, socket) => {
        if (err !== null) {
          callback(err, null)
          return
        }
        (socket as Socket).unref()
        callback(null, socket)
      })
    })
    this.loop = this.run()
  }

  /** True while the last poll was answered (the caller then need not refetch on its own). */
  get following (): boolean {
    return this.healthy && !this.closed
  }

  async close (): Promise<void> {
    this.closed = true
    this.healthy = false
    await this.client.destroy().catch(() => undefined)
    await this.loop
  }

  private async run (): Promise<void> {
    let backoff = FIRST_BACKOFF_MS
    while (!this.closed) {
      try {
        const res = await jsonRequest<unknown>(`${this.origin}${CLUSTER_MAP_PATH}?after=${this.opts.held()}&wait=${MAP_FOLLOW_MAX_WAIT_MS}`, {
          dispatcher: this.client, headers: this.opts.headers, timeoutMs: MAP_FOLLOW_MAX_WAIT_MS + SLACK_MS, maxBytes: CLUSTER_VIEW_MAX_BYTES
        })
        this.healthy = true
        backoff = FIRST_BACKOFF_MS
        if (res.status === 200) this.opts.offer(res.body)
      } catch (err) {
        this.healthy = false
        if (this.closed) return
        if (err instanceof ShardKvError && err.status === 404) return
        await sleep(backoff, undefined, { ref: false })
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
      }
    }
  }
}
