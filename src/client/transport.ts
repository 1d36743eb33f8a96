import type { BatchOpWire } from '../protocol/batch'
import type { OpResult } from './results'
import type { Pool } from 'undici'
import { poolOptions } from '../http/exchange'

/**
 * What the client needs from the network, in two implementations: RoutedTransport
 * (everything through one router) and DirectTransport (straight to each key's
 * primary, from the cluster map). KvClient holds the API and the result mapping
 * and does not know which one it talks through.
 */

export type KvMethod = 'GET' | 'PUT' | 'DELETE'

export interface SingleRequest {
  method: KvMethod
  key: string
  /** The value of a PUT. */
  body?: Buffer
  contentType?: string
  ifMatch?: string
  ifNoneMatch?: string
  /** A PUT's X-Shardkv-TTL text (checked already). */
  ttl?: string
  /** One per logical write, the same on every retry, so it is applied once (reads need none). */
  requestId?: string
}

export interface Transport {
  send: (req: SingleRequest) => Promise<OpResult>
  /**
   * One result per op, in order. An op that got no answer has an error result
   * (503 unavailable); a batch refused as a whole (malformed, over a limit) rejects.
   */
  batch: (ops: BatchOpWire[], batchId: string) => Promise<OpResult[]>
  /** Requests sent per base URL (router or node), retries included. */
  requestCounts: () => Record<string, number>
  close: () => Promise<void>
}

/** How a client proves who it is and whom it trusts (ClientOptions `token` and `ca`). */
export interface Credentials {
  /** Sent as `Authorization: Bearer <token>` on every request (router, /cluster, shard nodes). */
  token?: string
  /** PEM CA bundle the servers' certificates must chain to (https URLs); default: the system's. */
  ca?: string | Buffer
}

/** The headers every request carries for these credentials (built once per client, not per request). */
export function credentialHeaders (credentials: Credentials | undefined): Readonly<Record<string, string>> {
  const token = credentials?.token
  const headers: Record<string, string> = {}
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  return Object.freeze(headers)
}

/** A pool's options, verifying TLS servers against the credentials' CA when one is given. */
export function clientPoolOptions (connections: number, timeoutMs: number, credentials: Credentials | undefined): Pool.Options {
  const options = poolOptions(connections, timeoutMs)
  if (credentials?.ca !== undefined) options.connect = { ...(options.connect as object), ca: credentials.ca }
  return options
}

/** Ids are the protocol's: issue time and 128 random bits (src/protocol/request-id.ts). */
export { newRequestId } from '../protocol/request-id'

/** Exponential backoff from 10 ms to 200 ms, never past the deadline. */
export class Backoff {
  private next = 10
  constructor (readonly deadline: number) {}

  /** The wait before the next attempt, or undefined when it would pass the deadline. */
  step (now = Date.now()): number | undefined {
    const wait = this.next
    if (now + wait > this.deadline) return undefined
    this.next = Math.min(this.next * 2, 200)
    return wait
  }
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Counts requests per base URL (for stats, and for tests that check where traffic went). */
export class RequestCounter {
  private readonly counts = new Map<string, number>()
  add (url: string): void {
    this.counts.set(url, (this.counts.get(url) ?? 0) + 1)
  }

  snapshot (): Record<string, number> {
    return Object.fromEntries(this.counts)
  }
}
