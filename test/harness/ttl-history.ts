/**
 * The history check of the TTL tests: every key is written once, with a TTL, and read
 * many times on every path. The node that commits a write stamps its expiry somewhere
 * between the write's start and end (client clock, the same machine's clock), so:
 * - a read that ENDED before `write.start + ttl` ran entirely before any possible
 *   expiry: it must see the value (no early expiry) — when the write was acknowledged;
 * - a read that STARTED at or after `write.end + ttl` ran entirely after any possible
 *   expiry: it must not see the value (no read of an expired key);
 * - a read in between may see either. A read that got no answer says nothing.
 */

export interface TtlWrite {
  key: string
  value: string
  ttlMs: number
  start: number
  end: number
  /** Acknowledged (2xx); false: the outcome is unknown (it may or may not have applied). */
  acked: boolean
}

export interface TtlRead {
  key: string
  path: string
  start: number
  end: number
  /** The value read, null for a 404; undefined: no answer (an error or a timeout). */
  value: string | null | undefined
}

export type TtlVerdict = 'ok' | 'expired_value_read' | 'early_expiry' | 'wrong_value' | 'unknown'

/** What a read of a key written once (by `write`) may have returned. */
export function judgeTtlRead (write: TtlWrite, read: TtlRead): TtlVerdict {
  if (read.value === undefined) return 'unknown'
  if (read.value !== null) {
    if (read.value !== write.value) return 'wrong_value'
    return read.start >= write.end + write.ttlMs ? 'expired_value_read' : 'ok'
  }
  return write.acked && read.start >= write.end && read.end < write.start + write.ttlMs ? 'early_expiry' : 'ok'
}

/** Every read judged against its key's write; the violations, described. */
export function checkTtlHistory (writes: ReadonlyMap<string, TtlWrite>, reads: readonly TtlRead[]): { checked: number, violations: string[], byPath: Record<string, number> } {
  const violations: string[] = []
  const byPath: Record<string, number> = {}
  let checked = 0
  for (const read of reads) {
    const write = writes.get(read.key)
    if (write === undefined) continue
    const verdict = judgeTtlRead(write, read)
    if (verdict === 'unknown') continue
    checked++
    byPath[read.path] = (byPath[read.path] ?? 0) + 1
    if (verdict !== 'ok') {
      violations.push(`${verdict}: ${read.path} read of ${read.key} [${read.start}, ${read.end}] got ${JSON.stringify(read.value)}; written [${write.start}, ${write.end}] with ttl ${write.ttlMs} ms (acked ${String(write.acked)})`)
    }
  }
  return { checked, violations, byPath }
}
