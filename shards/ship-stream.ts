import { request, type Dispatcher } from '../src/http/undici'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import { ShardKvError, errorCodeOf } from '../src/protocol/errors'
import { JSON_ANSWER_MAX_BYTES } from '../src/protocol/limits'
import { METRIC_PREFIX } from '../src/protocol/wire'
import { readCapped } from '../src/http/capped-body'
import type { WireShipment, WireShipmentAnswer } from '../src/protocol/log-codec'

/**
 * The wire side of the pipelined replication stream (the bookkeeping is
 * src/replication/ship-window.ts): shipments to a replica go out over ONE kept-alive
 * connection per replica with HTTP/1.1 pipelining, up to `window` requests written
 * before the first is answered.
 *
 * Why pipelining on one socket: the replica's apply handler (replication-api.ts) is
 * synchronous from its checks to its commit, and Node's HTTP server parses the requests
 * of one socket in the order they were written, so shipments sent in order arrive and
 * are applied in order, and the replica's fsync of one overlaps the transfer of the
 * next. Correctness does not rest on that order, though: a replica applies a shipment
 * only when its `from` is exactly its position, so one that would arrive out of order
 * (or after one that failed) is answered 409 gap and applied nowhere, and the stream
 * rewinds to what the replica answered.
 *
 * undici pipelines a POST only when told it is idempotent, and only past one that is
 * not `blocking`. A shipment is safe to send again: the replica refuses a repeat (its
 * position has moved past the `from`), so nothing is applied twice.
 */

/** A 409 answer: the replica says where it stands (gap, resync) — or that this primary is fenced. */
export function isConflict (err: unknown): boolean {
  return err instanceof ShardKvError && err.details?.status === 409
}

export interface StreamMetrics {
  shipments: Counter
  /** Shipments in flight to the replica when one was sent, this one included. */
  inFlightAtSend: Histogram
  rewinds: Counter<'reason'>
}

/** `inFlight`: the shipments in flight now, to all replicas (read at each scrape). */
export function createStreamMetrics (registry: Registry | undefined, inFlight: () => number): StreamMetrics {
  const registers = registry === undefined ? [] : [registry]
  void new Gauge({ name: `${METRIC_PREFIX}shard_replication_in_flight`, help: 'Replication shipments in flight now, to all replicas.', registers, collect () { this.set(inFlight()) } })
  return {
    shipments: new Counter({ name: `${METRIC_PREFIX}shard_replication_shipments_total`, help: 'Replication shipments sent to replicas.', registers }),
    inFlightAtSend: new Histogram({
      name: `${METRIC_PREFIX}shard_replication_in_flight_at_send`,
      help: 'Shipments in flight to a replica when one was sent, that one included (at most --replication-window).',
      buckets: [1, 2, 3, 4, 8, 16, 32],
      registers
    }),
    rewinds: new Counter({ name: `${METRIC_PREFIX}shard_replication_rewinds_total`, help: 'Times a replication stream stopped, let its shipments settle and restarted from the replica\'s answer, by reason.', labelNames: ['reason'], registers })
  }
}

export class ShipStream {
  private readonly dispatcher: Dispatcher

  constructor (credentials: PeerCredentials, window: number) {
    this.dispatcher = peerDispatcher(credentials, { connections: 1, pipelining: Math.max(1, window), keepAliveTimeout: 30_000 })
  }

  /** Posts one shipment; resolves with the position the replica answered. */
  async post (url: string, body: WireShipment, timeoutMs: number): Promise<number> {
    const res = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      dispatcher: this.dispatcher,
      idempotent: true,
      blocking: false,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs
    })
    const text = (await readCapped(res, JSON_ANSWER_MAX_BYTES, `POST ${url}`)).toString('utf8')
    let parsed: (Partial<Record<keyof WireShipmentAnswer, unknown>> & { error?: unknown, message?: unknown }) | undefined
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new ShardKvError('upstream_error', `POST ${url}: ${res.statusCode} with a body that is not JSON`)
    }
    if (res.statusCode >= 400) {
      throw new ShardKvError(errorCodeOf(res.statusCode, parsed), typeof parsed?.message === 'string' ? parsed.message : `HTTP ${res.statusCode}`, { status: res.statusCode })
    }
    const position = parsed?.position
    if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) throw new ShardKvError('upstream_error', `POST ${url}: an answer without a position`)
    return position
  }

  async close (): Promise<void> {
    await this.dispatcher.close()
  }
}
