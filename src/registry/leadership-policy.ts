/**
 * When a coordinator may act as leader, decided from its own clock alone. Its lease is
 * counted from the moment it SENT the last successful renewal (etcd started the new TTL
 * no earlier than that), minus a margin for clock-rate drift and for a command already
 * on its way; past that it stops acting even if etcd is unreachable and no one could
 * tell it that another leads. Safety never rests on this alone: every change it makes
 * is a transaction guarded by its leader key, and nodes refuse an older fence. This
 * keeps a deposed coordinator from even trying.
 */

export interface LeadershipClock {
  /** ms (local clock) when the last renewal that etcd confirmed was sent; undefined: never led. */
  renewalSentAt: number | undefined
  ttlMs: number
  /** etcd said the lease is gone (a keep-alive answered TTL 0, or the leader key is someone else's). */
  lost: boolean
}

/** The part of the TTL kept back: a third, at least 500 ms (a renewal is sent every third). */
export function safetyMarginMs (ttlMs: number): number {
  return Math.max(500, Math.floor(ttlMs / 3))
}

export function holdsLeadership (c: LeadershipClock, now: number): boolean {
  if (c.lost || c.renewalSentAt === undefined) return false
  return now < c.renewalSentAt + c.ttlMs - safetyMarginMs(c.ttlMs)
}

/** How long until the next renewal: every third of the TTL, so two may fail before the margin. */
export function renewalIntervalMs (ttlMs: number): number {
  return Math.max(100, Math.floor(ttlMs / 3) - 100)
}
