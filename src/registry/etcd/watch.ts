import { setTimeout as sleep } from 'node:timers/promises'
import { request } from '../../http/undici'
import type { EtcdGateway } from './gateway'
import { etcdMemberHealthy } from './member-health'
import { b64, num, prefixEnd, unb64, type EtcdWatchReply } from './wire'

export interface WatchedChange {
  type: 'put' | 'delete'
  key: string
  /** The new value ('' for a delete). */
  value: string
  modRevision: number
}

export interface WatchHandlers {
  /** Changes in revision order; `revision` is the store's revision they bring the watcher to. */
  onChanges: (changes: WatchedChange[], revision: number) => void
  /**
   * The revision to resume from was compacted away: changes were missed. The watch has
   * ended; the caller re-reads everything and watches again from the read's revision.
   */
  onCompacted: (compactRevision: number) => void
  /** A stream broke (it is reopened from the last revision seen, on the next endpoint). */
  onInterrupted?: (reason: string) => void
}

const FIRST_RETRY_MS = 100
const MAX_RETRY_MS = 2000
/**
 * A stream silent this long has its member asked whether it is healthy (has a leader and
 * a quorum). A stream to a member cut off from the client, or from its peers, stays open
 * and silent forever — no error, no events — so silence alone cannot be trusted.
 */
const LIVENESS_MS = 2000

/**
 * A watch of one key or prefix over the gateway's streaming `/v3/watch`, resumed from
 * the revision after the last change delivered whenever the stream breaks (a member
 * restarting, a partition), on the next endpoint. Changes are thus delivered in order,
 * none skipped, none twice; a compacted resume point is reported, never skipped over.
 */
export class EtcdWatch {
  private next: number
  private closed = false
  private abort: AbortController | undefined
  private readonly done: Promise<void>

  constructor (
    private readonly gateway: EtcdGateway,
    private readonly key: string,
    opts: { prefix?: boolean, startRevision: number },
    private readonly handlers: WatchHandlers,
    private readonly prefix = opts.prefix === true
  ) {
    this.next = opts.startRevision
    this.done = this.run()
  }

  /** The first revision this watch has not delivered yet. */
  get resumeRevision (): number {
    return this.next
  }

  async close (): Promise<void> {
    this.closed = true
    this.abort?.abort()
    await this.done
  }

  private async run (): Promise<void> {
    let backoff = FIRST_RETRY_MS
    while (!this.closed) {
      const reason = await this.stream().catch((err: Error) => err.message)
      if (this.closed || reason === 'compacted') return
      if (reason === 'delivered') backoff = FIRST_RETRY_MS
      this.handlers.onInterrupted?.(reason)
      this.gateway.rotate()
      await sleep(backoff)
      backoff = Math.min(backoff * 2, MAX_RETRY_MS)
    }
  }

  /** One stream, until it ends: 'compacted', 'delivered' (ended after delivering), or why it broke. */
  private async stream (): Promise<string> {
    this.abort = new AbortController()
    const create: Record<string, unknown> = { key: b64(this.key), start_revision: String(this.next), progress_notify: true }
    if (this.prefix) create.range_end = prefixEnd(this.key)
    const res = await request(`${this.gateway.endpoint()}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: create }),
      headers: { 'content-type': 'application/json' },
      dispatcher: this.gateway.agent,
      signal: this.abort.signal,
      headersTimeout: this.gateway.timeoutMs,
      bodyTimeout: 0
    })
    if (res.statusCode !== 200) {
      await res.body.dump()
      return `watch answered ${res.statusCode}`
    }
    const endpoint = this.gateway.endpoint()
    const abort = this.abort
    let heard = Date.now()
    let unhealthy = ''
    const liveness = setInterval(() => {
      if (Date.now() - heard < LIVENESS_MS) return
      void etcdMemberHealthy(endpoint, LIVENESS_MS, this.gateway.agent).then((ok) => {
        if (ok || abort.signal.aborted) return
        unhealthy = `${endpoint} is silent and not healthy (cut off, or without a quorum)`
        abort.abort()
      })
    }, LIVENESS_MS)
    try {
      return await this.read(res.body, () => { heard = Date.now() })
    } catch (err) {
      if (unhealthy !== '') return unhealthy
      throw err
    } finally {
      clearInterval(liveness)
    }
  }

  private async read (body: AsyncIterable<unknown> & { destroy: () => void }, heard: () => void): Promise<string> {
    let buffered = ''
    let delivered = false
    for await (const chunk of body) {
      heard()
      buffered += (chunk as Buffer).toString('utf8')
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim()
        buffered = buffered.slice(nl + 1)
        if (line === '') continue
        const outcome = this.receive(JSON.parse(line) as EtcdWatchReply)
        if (outcome === 'compacted') {
          body.destroy()
          return 'compacted'
        }
        if (outcome === 'canceled') return 'the watch was canceled by etcd'
        delivered ||= outcome === 'delivered'
      }
    }
    return delivered ? 'delivered' : 'the watch stream ended'
  }

  private receive (reply: EtcdWatchReply): 'delivered' | 'compacted' | 'canceled' | 'nothing' {
    const r = reply.result
    if (r === undefined) return reply.error !== undefined ? 'canceled' : 'nothing'
    if (r.canceled === true) {
      if (num(r.compact_revision) > 0) {
        this.handlers.onCompacted(num(r.compact_revision))
        return 'compacted'
      }
      return 'canceled'
    }
    const events = r.events ?? []
    if (events.length === 0) return 'nothing'
    const changes = events.map((e): WatchedChange => ({
      type: e.type === 'DELETE' ? 'delete' : 'put',
      key: unb64(e.kv.key),
      value: unb64(e.kv.value),
      modRevision: num(e.kv.mod_revision)
    }))
    const last = changes[changes.length - 1]?.modRevision ?? 0
    this.next = Math.max(this.next, last + 1)
    this.handlers.onChanges(changes, Math.max(last, num(r.header?.revision)))
    return 'delivered'
  }
}
