import type { Dispatcher } from 'undici'
import { jsonRequest } from '../src/client/http'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import { INTERNAL } from '../src/protocol/wire'
import { FEED_VALUE_BUDGET, FEED_VALUES_PARAM, type WireFeedReply } from '../src/protocol/watch'

/**
 * Reads group primaries' change feeds (`GET /internal/feed`, peer API) for the router's
 * watch streams: with the peer credentials, at the node's peer listener when the router
 * knows one. One small kept-alive pool per router, shared by every stream.
 */

export interface PeerDirectory {
  /** Where a node's internal API is, when known (else its data URL serves it). */
  peerOf: (url: string) => string | undefined
  /** The largest value a key may hold (--max-value-bytes): one such value may come in an answer with values. */
  maxValueBytes: number
}

const FEED_TIMEOUT_MS = 10_000
/** A feed answer of MAX_LIMIT entries is well under this (values come on top, base64). */
const FEED_MAX_BYTES = 4 * 1024 * 1024

export class FeedClient {
  private readonly agent: Dispatcher

  constructor (credentials: PeerCredentials, private readonly nodes: PeerDirectory) {
    this.agent = peerDispatcher(credentials, { connections: 8, keepAliveTimeout: 30_000 })
  }

  /** Entries after `after` (undefined: only where the feed stands), `prefix` applied, puts with their values when asked. Throws a ShardKvError (e.g. cursor_compacted, misdirected). */
  async read (primary: string, after: number | undefined, prefix: string, limit: number, values: boolean): Promise<WireFeedReply> {
    const q = new URLSearchParams({ prefix, limit: String(limit) })
    if (after !== undefined) q.set('after', String(after))
    if (values) q.set(FEED_VALUES_PARAM, '1')
    const base = this.nodes.peerOf(primary) ?? primary
    // With values: max(budget, one value) bytes of them, base64 (4/3).
    const maxBytes = FEED_MAX_BYTES + (values ? Math.ceil(Math.max(FEED_VALUE_BUDGET, this.nodes.maxValueBytes) * 4 / 3) : 0)
    return (await jsonRequest<WireFeedReply>(`${base}${INTERNAL.feed}?${q.toString()}`, { dispatcher: this.agent, timeoutMs: FEED_TIMEOUT_MS, maxBytes })).body
  }

  async close (): Promise<void> {
    await this.agent.close()
  }
}
