import { randomBytes } from 'node:crypto'
import type { BatchOpWire } from '../protocol/batch'
import type { OpResult } from './results'

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

/**
 * 96 random bits per process: ids from different processes (or a restarted one) cannot
 * meet, so the per-call part only has to be unique within this process.
 */
const ID_PREFIX = randomBytes(12).toString('base64url')
let idCounter = 0

/**
 * `[A-Za-z0-9_-]{17,27}`: the process prefix and a base-36 counter. It fits the
 * request-id header with room for `-c<start>-<index>` in batch rids, and costs no
 * random bytes per call (a crypto-random id per call was a measurable share of the
 * direct client's CPU).
 */
export function newRequestId (): string {
  return ID_PREFIX + (++idCounter).toString(36)
}


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
