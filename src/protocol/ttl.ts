import { ShardKvError } from './errors'

/**
 * Time to live. A client sends a TTL in seconds (`X-Shardkv-TTL` on a PUT, `ttl` in a
 * batch put); the shard node that commits the write turns it into an absolute expiry
 * (ms since the epoch, read inside the write's transaction) stored with the row, and
 * every node that reads the row judges it against its own clock. Routers never do
 * clock arithmetic: they check the text and pass it on, and relay the remaining TTL.
 *
 * The same text is answered on a GET: the remaining time, in seconds with millisecond
 * precision. Decimals are allowed on the way in too (at most three), so `1.5` means
 * 1500 ms; zero and negative TTLs are refused (a key that expires on arrival is a DELETE).
 */

/** Ten years: longer is almost surely a unit mistake (ms sent as seconds). */
export const MAX_TTL_SECONDS = 315_360_000

const TTL_TEXT = /^\d{1,9}(\.\d{1,3})?$/

/** The TTL in ms of a header or batch field (undefined: none given); throws `invalid_ttl` (400). */
export function parseTtl (raw: unknown, name: string): number | undefined {
  if (raw === undefined) return undefined
  if (typeof raw === 'number') return ttlMsOf(raw, String(raw), name)
  if (typeof raw !== 'string' || !TTL_TEXT.test(raw)) {
    throw new ShardKvError('invalid_ttl', `${name} must be a number of seconds (at most 3 decimals), from 0.001 to ${MAX_TTL_SECONDS}`)
  }
  return ttlMsOf(Number(raw), raw, name)
}

function ttlMsOf (seconds: number, text: string, name: string): number {
  const ms = Math.round(seconds * 1000)
  if (!Number.isFinite(seconds) || ms <= 0 || seconds > MAX_TTL_SECONDS || Math.abs(seconds * 1000 - ms) > 1e-6) {
    throw new ShardKvError('invalid_ttl', `${name} must be a number of seconds (at most 3 decimals), from 0.001 to ${MAX_TTL_SECONDS}; got ${text}`)
  }
  return ms
}

/** The stored expiry of a write committed at `now` (null: the row never expires). */
export function expiryOf (now: number, ttlMs: number | undefined): number | null {
  return ttlMs === undefined ? null : now + ttlMs
}

/** A row with this expiry reads as absent at `now`: from the expiry's own millisecond on. */
export function isExpired (expiresAt: number | null, now: number): boolean {
  return expiresAt !== null && now >= expiresAt
}

/** The remaining TTL as the GET header carries it: seconds, millisecond precision (undefined: no expiry). */
export function formatRemainingTtl (expiresAt: number | null, now: number): string | undefined {
  if (expiresAt === null) return undefined
  return (Math.max(0, expiresAt - now) / 1000).toFixed(3)
}

/** A TTL in ms as the header text that parses back to it (a batch put's TTL sent on the single-key path). */
export function ttlText (ms: number): string {
  return String(ms / 1000)
}
