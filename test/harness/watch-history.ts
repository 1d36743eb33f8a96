/**
 * The history check of the watch tests. Each key has one writer, so its writes form a
 * chain in a known order: acknowledged ones with their ETags, and attempts whose outcome
 * is unknown (they may or may not have applied, and their ETag is not known). A watcher's
 * events for the key must then:
 * - contain every acknowledged ETag, in the chain's order (nothing acknowledged missing,
 *   per-key commit order), repeats allowed (at-least-once);
 * - show no ETag that is not acknowledged unless some attempt's outcome is unknown;
 * - end with the last acknowledged ETag, unless an unknown attempt came after it (an
 *   unacknowledged write that was later overwritten is never the final state).
 */

export interface KeyChain {
  /** In write order: an ETag for an acknowledged write, null for an attempt with no answer. */
  writes: Array<string | null>
}

export interface SeenEvent { key: string, op: string, etag: string }

/** What is wrong with one key's events (empty: nothing). */
export function judgeKeyEvents (chain: KeyChain, events: readonly string[]): string[] {
  const problems: string[] = []
  const acked = chain.writes.filter((w): w is string => w !== null)
  const unknown = chain.writes.some((w) => w === null)
  let at = 0
  for (const etag of events) {
    if (etag === acked[at]) { at++; continue }
    // A repeat of one already seen (at-least-once) is fine; going back past a newer one is not.
    if (at > 0 && etag === acked[at - 1]) continue
    if (acked.includes(etag)) problems.push(`${etag} out of order (expected ${acked[at] ?? 'nothing more'})`)
    else if (!unknown) problems.push(`${etag} was never acknowledged and no write's outcome is unknown`)
  }
  if (at < acked.length) problems.push(`acknowledged ${acked.slice(at).join(', ')} never seen in order`)
  const last = chain.writes.lastIndexOf(acked[acked.length - 1] ?? '')
  const unknownAfterLast = chain.writes.slice(last + 1).some((w) => w === null)
  if (acked.length > 0 && !unknownAfterLast && events[events.length - 1] !== acked[acked.length - 1]) {
    problems.push(`final state ${events[events.length - 1] ?? 'none'} is not the last acknowledged ${acked[acked.length - 1] ?? ''}`)
  }
  return problems
}

/** Every key's events judged against its chain. */
export function checkWatchHistory (chains: ReadonlyMap<string, KeyChain>, events: readonly SeenEvent[]): string[] {
  const byKey = new Map<string, string[]>()
  for (const e of events) {
    if (e.op !== 'put') continue
    let list = byKey.get(e.key)
    if (list === undefined) byKey.set(e.key, list = [])
    list.push(e.etag)
  }
  const problems: string[] = []
  for (const [key, chain] of chains) {
    for (const p of judgeKeyEvents(chain, byKey.get(key) ?? [])) problems.push(`${key}: ${p}`)
  }
  return problems
}
