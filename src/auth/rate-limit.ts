import { ShardKvError } from '../protocol/errors'

/**
 * The router's rate limits: at most `perIp` requests per client address and `perToken`
 * per authenticated principal in each window of `windowMs` (0 turns a limit off).
 * One object serves both the fastify routes (an onRequest hook) and the GET fast path,
 * so a client cannot double its allowance by mixing GETs with other requests.
 *
 * Fixed windows, shared by every key: a window opens with the first request after the
 * last one closed, and when it ends every counter is dropped together. That bounds memory by the addresses and tokens seen in one window,
 * needs no sweeper timer, and costs one Map lookup per limit per request. A client
 * can burst up to twice its limit across a window boundary — acceptable for a limit
 * meant to stop floods, not to meter.
 *
 * Why not @fastify/rate-limit: it keys one counter per route registration by one key
 * generator, while a request here counts against two limits at once (address before
 * authentication, so 401 floods are limited too; principal after it), and the same
 * counters must be charged by the fast path, which runs outside fastify. Its store
 * interface is asynchronous (a callback per increment), too much for the GET path.
 */

export interface RateLimitOptions {
  perToken: number
  perIp: number
  windowMs: number
}

export class RateLimiter {
  private readonly byIp = new Map<string, number>()
  private readonly byToken = new Map<string, number>()
  private windowEnd = 0

  constructor (private readonly options: RateLimitOptions) {}

  /** True when any limit is on (callers skip the checks otherwise). */
  get enabled (): boolean {
    return this.options.perIp > 0 || this.options.perToken > 0
  }

  /** Charges one request to a client address; throws `rate_limited` past the limit. */
  chargeIp (ip: string | undefined, now = Date.now()): void {
    if (this.options.perIp > 0) this.charge(this.byIp, ip ?? '', this.options.perIp, now, 'address')
  }

  /** Charges one request to an authenticated principal; throws `rate_limited` past the limit. */
  chargeToken (name: string, now = Date.now()): void {
    if (this.options.perToken > 0) this.charge(this.byToken, name, this.options.perToken, now, 'token')
  }

  private charge (counts: Map<string, number>, key: string, limit: number, now: number, what: string): void {
    if (now >= this.windowEnd) {
      this.byIp.clear()
      this.byToken.clear()
      this.windowEnd = now + this.options.windowMs
    }
    const n = (counts.get(key) ?? 0) + 1
    counts.set(key, n)
    if (n > limit) {
      const retryAfterMs = this.windowEnd - now
      // Retry-After is in whole seconds; never 0, which would invite an immediate retry.
      throw new ShardKvError('rate_limited', `more than ${limit} requests per ${this.options.windowMs} ms from this ${what}`, { retryAfterMs },
        { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) })
    }
  }
}
