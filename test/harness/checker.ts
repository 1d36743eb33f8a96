/**
 * The checker behind test/harness/history.ts: a model of what each key may hold,
 * fed with every request the load generator makes, reporting violations of the two
 * data guarantees (DESIGN.md): no acknowledged write is lost, and reads are not stale.
 *
 * Each client owns a disjoint set of keys and works on them sequentially, writing
 * values unique to the run (run id + client + counter). Because only one client ever
 * touches a key and it waits for each answer, the state a read must see is known
 * exactly: the last acknowledged write (or delete) of that key. The one source of
 * doubt is a write whose outcome is unknown (network error, timeout, 5xx): it may or
 * may not have been applied, now or later, so from its start on its value is also
 * an acceptable answer. Nothing else is: in particular an older acknowledged value
 * is a stale read (during the load) or a lost write (when verifying afterwards).
 *
 * Some tests (the failover probes) do write one key from two clients at once: a write
 * retried across a failover can be acknowledged — answered from its first, applied
 * attempt — after a later write to the same key was. Two acknowledged writes whose
 * intervals overlap may take effect in either order, so both stay acceptable until a
 * write that started after both were acknowledged is acknowledged itself.
 *
 * The model (HistoryChecker) is pure, so test/unit/history.test.ts can prove that it
 * reports fabricated violations.
 */

/** The state of a key: a value, or null for absent (never written, or deleted). */
export type KeyState = string | null

export type ViolationType =
  /** A read during the load returned an older acknowledged state. */
  | 'stale-read'
  /** A read returned a value that was never written to this key. */
  | 'unknown-value'
  /** After the load, the key does not hold its last acknowledged state (nor an unknown-outcome one). */
  | 'lost-write'
  /** A read returned the right value with another content type than was written. */
  | 'wrong-content-type'
  /** The final read-back itself failed, so the key's acknowledged write could not be confirmed. */
  | 'unverifiable'

export interface Violation {
  type: ViolationType
  key: string
  /** The last acknowledged state. */
  expected: KeyState
  /** States from writes whose outcome is unknown or still in flight (also acceptable). */
  alsoAcceptable: KeyState[]
  got: KeyState | { error: string }
  /** ms since the checker was created */
  at: number
  detail?: string
}

interface KeyRecord {
  key: string
  acked: KeyState
  /** Every state ever acknowledged for this key, oldest first (starts with null: absent). */
  ackedHistory: KeyState[]
  /** Writes sent and not answered yet. */
  pending: KeyState[]
  /** When each pending write was sent (on the checker's event clock), in sending order. */
  sentAt: Array<{ state: KeyState, at: number }>
  /** Acknowledged states no later acknowledged write has superseded (it overlapped them). */
  current: Array<{ state: KeyState, ackedAt: number }>
  /** Writes whose outcome is unknown: they may take effect at any time after they started. */
  uncertain: KeyState[]
}

export interface CheckerCounts {
  writesAcked: number
  deletesAcked: number
  writesUnknown: number
  readsChecked: number
  readsFailed: number
  keysVerified: number
}

function show (s: KeyState | { error: string }): string {
  if (s === null) return '<absent>'
  if (typeof s === 'string') return JSON.stringify(s)
  return `<error: ${s.error}>`
}

export function formatViolation (v: Violation): string {
  const also = v.alsoAcceptable.length === 0 ? '' : ` (or one of unknown-outcome ${v.alsoAcceptable.map(show).join(', ')})`
  return `${v.type} key=${JSON.stringify(v.key)} expected=${show(v.expected)}${also} got=${show(v.got)} at=${v.at}ms${v.detail === undefined ? '' : ` ${v.detail}`}`
}

export class HistoryChecker {
  readonly violations: Violation[] = []
  readonly counts: CheckerCounts = { writesAcked: 0, deletesAcked: 0, writesUnknown: 0, readsChecked: 0, readsFailed: 0, keysVerified: 0 }
  private readonly keys = new Map<string, KeyRecord>()
  private readonly t0 = Date.now()
  /** A logical clock: one tick per event, so events in the same millisecond are still ordered. */
  private clock = 0

  /** Declares a key (initially absent). Keys are also declared by their first use. */
  track (key: string): void {
    this.record(key)
  }

  trackedKeys (): string[] {
    return [...this.keys.keys()]
  }

  private record (key: string): KeyRecord {
    let r = this.keys.get(key)
    if (r === undefined) {
      r = { key, acked: null, ackedHistory: [null], pending: [], sentAt: [], current: [{ state: null, ackedAt: -1 }], uncertain: [] }
      this.keys.set(key, r)
    }
    return r
  }

  /** A PUT (value) or DELETE (null) was sent. */
  writeStarted (key: string, state: KeyState): void {
    const r = this.record(key)
    r.pending.push(state)
    r.sentAt.push({ state, at: ++this.clock })
  }

  /** When the write of `state` was sent (and forgets it). */
  private sent (r: KeyRecord, state: KeyState): number {
    const i = r.sentAt.findIndex((e) => e.state === state)
    const [e] = i === -1 ? [] : r.sentAt.splice(i, 1)
    return e?.at ?? ++this.clock
  }

  /** The write was acknowledged (2xx). */
  writeAcked (key: string, state: KeyState): void {
    const r = this.record(key)
    removeOne(r.pending, state)
    const sentAt = this.sent(r, state)
    // Writes acknowledged before this one was sent are superseded; overlapping ones are not.
    r.current = r.current.filter((e) => e.ackedAt > sentAt)
    r.current.push({ state, ackedAt: ++this.clock })
    r.acked = state
    r.ackedHistory.push(state)
    if (state === null) this.counts.deletesAcked++
    else this.counts.writesAcked++
  }

  /** The write failed in a way that leaves its outcome unknown (it may have been applied). */
  writeUnknown (key: string, state: KeyState): void {
    const r = this.record(key)
    removeOne(r.pending, state)
    this.sent(r, state)
    r.uncertain.push(state)
    this.counts.writesUnknown++
  }

  /** The write was refused with a definite answer (nothing was applied). */
  writeRefused (key: string, state: KeyState): void {
    const r = this.record(key)
    removeOne(r.pending, state)
    this.sent(r, state)
  }

  private acceptable (r: KeyRecord, got: KeyState): boolean {
    return got === r.acked || r.current.some((e) => e.state === got) || r.pending.includes(got) || r.uncertain.includes(got)
  }

  private violation (type: ViolationType, r: KeyRecord, got: KeyState | { error: string }, detail?: string): Violation {
    const v: Violation = {
      type,
      key: r.key,
      expected: r.acked,
      alsoAcceptable: [...r.pending, ...r.uncertain],
      got,
      at: Date.now() - this.t0
    }
    if (detail !== undefined) v.detail = detail
    this.violations.push(v)
    return v
  }

  /** Checks a successful read during the load. Returns the violation, if any. */
  readResult (key: string, got: KeyState, contentType?: { expected: string, got: string | undefined }): Violation | undefined {
    const r = this.record(key)
    this.counts.readsChecked++
    if (!this.acceptable(r, got)) {
      return this.violation(r.ackedHistory.includes(got) ? 'stale-read' : 'unknown-value', r, got)
    }
    if (got !== null && contentType !== undefined && contentType.got !== contentType.expected) {
      return this.violation('wrong-content-type', r, got, `content-type expected ${JSON.stringify(contentType.expected)} got ${JSON.stringify(contentType.got)}`)
    }
    return undefined
  }

  readFailed (): void {
    this.counts.readsFailed++
  }

  /** Checks the read-back of a key after the load has stopped. */
  finalState (key: string, got: KeyState | { error: string }): Violation | undefined {
    const r = this.record(key)
    if (got !== null && typeof got === 'object') return this.violation('unverifiable', r, got)
    this.counts.keysVerified++
    if (this.acceptable(r, got)) return undefined
    const detail = r.ackedHistory.includes(got)
      ? 'the key went back to an older acknowledged state'
      : 'the key holds a value never written to it'
    return this.violation('lost-write', r, got, detail)
  }

  report (): HistoryReport {
    const byType: Partial<Record<ViolationType, number>> = {}
    for (const v of this.violations) byType[v.type] = (byType[v.type] ?? 0) + 1
    return {
      ok: this.violations.length === 0,
      counts: { ...this.counts },
      byType,
      violations: [...this.violations],
      lostWrites: this.violations.filter((v) => v.type === 'lost-write'),
      staleReads: this.violations.filter((v) => v.type === 'stale-read'),
      text: this.violations.length === 0
        ? 'no violations'
        : `${this.violations.length} violation(s): ${JSON.stringify(byType)}\n` +
          this.violations.slice(0, 30).map(formatViolation).join('\n') +
          (this.violations.length > 30 ? `\n… and ${this.violations.length - 30} more` : '')
    }
  }
}

function removeOne (list: KeyState[], item: KeyState): void {
  const i = list.indexOf(item)
  if (i !== -1) list.splice(i, 1)
}

export interface HistoryReport {
  ok: boolean
  counts: CheckerCounts
  byType: Partial<Record<ViolationType, number>>
  violations: Violation[]
  lostWrites: Violation[]
  staleReads: Violation[]
  /** Human summary with the first violations, one per line. */
  text: string
  /** The linearizability search over the same load (loads that record one; see ./linearizability.ts). */
  linearizability?: import('./linearizability').LinReport
}
