/**
 * A per-key linearizability checker for the data API (DESIGN guarantees 1 and 2 taken
 * together, and "a request id can never make one write stand in for another"): given
 * every operation a test made, with its invocation and completion times and its answer,
 * is there one order of all of them, consistent with real time, in which each answer
 * is what a single register per key would have given?
 *
 * test/harness/checker.ts answers a narrower question for loads where one client owns a
 * key; this one holds for any number of clients writing the same keys at once, which is
 * where a write applied twice (issue 15) shows.
 *
 * The search is Wing & Gong's, with Lowe's memoization, as Porcupine and Knossos run it:
 * - P-compositionality: a history is linearizable iff each key's sub-history is, so
 *   keys are checked one by one;
 * - a key's ops become call and return entries in one doubly linked list sorted by time
 *   (a call before a return at the same instant: touching ops count as concurrent);
 * - depth-first: take the first call in the list whose op the model accepts in the
 *   current state, "lift" its call and return out of the list, go on from the head;
 *   meeting a return entry means the op it ends was never linearized before it
 *   completed, so backtrack (unlift the last op, try the next call);
 * - a cache of (set of linearized ops, model state) already explored prunes the search
 *   (the set is a Uint32Array bitset, keyed by its incremental 64-bit Zobrist hash, with
 *   the interned state id; see Cache).
 * An op whose outcome is unknown (network error, timeout, 5xx) completes at +infinity:
 * it may take effect at any point after its invocation, or never (taking effect after
 * everything else is the same as never). Once the scan reaches the return of such an
 * op, every op with a known outcome has been linearized: the key is linearizable.
 *
 * The model is a register per key: absent (null) or a value with the ETag the store gave
 * it (unknown when the write's answer was lost). What each answer says about it:
 * - PUT 201: the key was absent; PUT 200: it was present (the store answers 201 Created
 *   only to a key it did not hold, a retry replayed answers as its first attempt did);
 *   either way it now holds the value. `If-Match` needs the current ETag, `If-None-Match: *`
 *   an absent key. PUT 412: the condition failed and nothing changed.
 * - DELETE 204: the key is now absent (whatever it was). DELETE 412: its If-Match failed.
 * - GET 200 with v: the key holds v (and the given ETag, when the model knows it);
 *   GET 404: the key is absent.
 * - Another definite 4xx refused the request and changed nothing: the op is left out.
 *   A GET whose outcome is unknown is left out too (it observed nothing).
 *
 * The search is bounded per key (steps and wall time); a key that runs out is reported
 * as 'inconclusive', never as fine.
 */

import { UNREAD, step, blind, classify, type LinOp, type KeyResult, type LinOptions, type State, type Op } from './linearizability-model'
export type { LinKind, LinOp, KeyVerdict, KeyResult, LinOptions, LinReport } from './linearizability-model'

interface Entry {
  op: Op
  isCall: boolean
  time: number
  /** The call's return entry (for a call), or the call (for a return). */
  match: Entry | undefined
  prev: Entry | undefined
  next: Entry | undefined
}

function lift (call: Entry): void {
  call.prev!.next = call.next
  if (call.next !== undefined) call.next.prev = call.prev
  const ret = call.match!
  ret.prev!.next = ret.next
  if (ret.next !== undefined) ret.next.prev = ret.prev
}

function unlift (call: Entry): void {
  const ret = call.match!
  ret.prev!.next = ret
  if (ret.next !== undefined) ret.next.prev = ret
  call.prev!.next = call
  if (call.next !== undefined) call.next.prev = call
}

/** Interns states so the cache compares small integers. */
class States {
  private readonly ids = new Map<string, number>()
  id (s: State): number {
    const k = s === null ? '' : `${s.etag ?? ''}\u0000${s.value}`
    let id = this.ids.get(k)
    if (id === undefined) {
      id = this.ids.size
      this.ids.set(k, id)
    }
    return id
  }
}

/** Deterministic 32-bit values per op id (Zobrist hashing of the linearized set). */
function zobrist (n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n)
  let a = seed >>> 0
  for (let i = 0; i < n; i++) {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    out[i] = (x ^ (x >>> 14)) >>> 0
  }
  return out
}

interface CacheEntry { state: number, unknown: Uint32Array }

/**
 * The explored configurations. A configuration is (linearized ops with a known outcome,
 * state, unknown-outcome ops applied). Applying an unknown-outcome op can only take
 * options away (it could also have been applied later, or never), so a configuration is
 * dominated by one with the same known ops and state and a subset of its unknown ones:
 * if that one was explored (and, since the search is still running, failed), this one
 * fails too. Without this, every pending unknown op multiplies the search space.
 *
 * The set of known ops is compared by its 64-bit Zobrist hash (two independent 32-bit
 * ones), not bit by bit: storing and comparing a copy of a few-thousand-bit set per
 * configuration made every step ten times slower. A collision (odds about c²/2^65 for c
 * configurations: under 1e-8 for a million) could only prune a configuration wrongly.
 */
class Cache {
  private readonly buckets = new Map<number, Map<number, CacheEntry[]>>()
  size = 0
  /** Adds the configuration; false when it (or one dominating it) was there already. */
  add (h1: number, h2: number, state: number, unknown: Uint32Array): boolean {
    let inner = this.buckets.get(h1)
    if (inner === undefined) this.buckets.set(h1, inner = new Map())
    const k = (h2 ^ Math.imul(state + 1, 0x9E3779B1)) >>> 0
    const list = inner.get(k)
    const entry = { state, unknown: unknown.length === 0 ? unknown : unknown.slice() }
    this.size++
    if (list === undefined) {
      inner.set(k, [entry])
      return true
    }
    for (const e of list) if (e.state === state && subset(e.unknown, unknown)) { this.size--; return false }
    list.push(entry)
    return true
  }
}

function subset (a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (((a[i] as number) & ~(b[i] as number)) !== 0) return false
  return true
}

function setBit (bits: Uint32Array, i: number): void {
  bits[i >>> 5] = (bits[i >>> 5] as number) | (1 << (i & 31))
}

function clearBit (bits: Uint32Array, i: number): void {
  bits[i >>> 5] = (bits[i >>> 5] as number) & ~(1 << (i & 31))
}

function fmtTime (ms: number, origin: number): string {
  return Number.isFinite(ms) ? (ms - origin).toFixed(1) : '∞'
}

function showState (s: State): string {
  if (s === UNREAD) return '<a value written with an unknown outcome and never read>'
  return s === null ? '<absent>' : JSON.stringify(s.value)
}

/** One op, one line: client, op, interval, answer. */
export function describeOp (o: LinOp, origin = 0): string {
  const cond = `${o.ifMatch !== undefined ? ` If-Match ${o.ifMatch}` : ''}${o.ifNoneMatch === true ? ' If-None-Match *' : ''}`
  const what = o.kind === 'put' ? `PUT ${JSON.stringify(o.value)}${cond}` : o.kind === 'delete' ? `DELETE${cond}` : 'GET'
  const end = o.completeMs === undefined ? '?' : fmtTime(o.completeMs, origin)
  let answer: string
  if (o.status === undefined || o.completeMs === undefined) answer = 'outcome unknown'
  else if (o.status >= 500) answer = `${o.status} (outcome unknown)`
  else if (o.kind === 'get' && o.status === 200) answer = `200 ${JSON.stringify(o.got)}`
  else answer = String(o.status)
  const etag = o.etag !== undefined && o.status !== undefined && o.status < 300 ? ` etag ${o.etag}` : ''
  return `c${String(o.client).replace(/^c/, '')} ${what} [${fmtTime(o.invokeMs, origin)}–${end}] → ${answer}${etag}${o.note !== undefined ? ` (${o.note})` : ''}`
}

/**
 * Unknown-outcome ops that are interchangeable: every unconditional DELETE; every
 * unconditional PUT whose value no read returned (values are unique, so such a PUT can
 * matter only by making the key present); or one op alone. An op may take effect any time
 * after its invocation, and along a search path the set of invoked ops only grows, so
 * any one of a class's invoked ops is as good as another: the search always applies the
 * earliest unapplied one (`used` is how many of them are applied, a prefix of `ops`).
 */
interface UnknownClass {
  ops: Op[]
  used: number
}

/** What a configuration may do next: linearize a known-outcome op, or apply an unknown class's next op. */
type Candidate = Entry | number

/** One configuration on the search path. */
interface Frame {
  /** Candidates, in the order tried: known-outcome ops by completion time, then unknown classes. */
  candidates: Candidate[]
  next: number
  /** How this configuration was reached from the one below it (undefined for the first). */
  via: Candidate | undefined
  /** The state before `via`. */
  before: State
}

/**
 * Checks one key's ops (all of the same key).
 *
 * Known-outcome ops are call/return entries in the main list; unknown-outcome ops are in
 * a second list and are candidates only after every known-outcome candidate of a
 * configuration was tried (an op of the first list is a candidate while its call comes
 * before the first return in the list; one of the second while it was invoked no later
 * than that return). The search is the same; trying the ops that must happen first finds
 * a valid order sooner, and the dominance rule of the cache keeps the unknown ones from
 * multiplying the configurations.
 */
export function checkKey (key: string, history: readonly LinOp[], options: LinOptions = {}): KeyResult {
  const t0 = performance.now()
  const maxSteps = options.maxStepsPerKey ?? 2_000_000
  const maxMs = options.maxMsPerKey ?? 10_000
  const known: Op[] = []
  const unknownOps: Op[] = []
  let origin = options.originMs ?? Infinity
  for (const src of history) {
    const outcome = classify(src)
    if (outcome === undefined) continue
    if (options.originMs === undefined) origin = Math.min(origin, src.invokeMs)
    if (outcome.startsWith('unknown')) unknownOps.push({ id: unknownOps.length, src, outcome, invoke: src.invokeMs, complete: Infinity })
    else known.push({ id: known.length, src, outcome, invoke: src.invokeMs, complete: Math.max(src.completeMs as number, src.invokeMs) })
  }
  if (!Number.isFinite(origin)) origin = 0
  const n = known.length
  const base = { key, ops: n + unknownOps.length, unknown: unknownOps.length }
  if (n === 0) return { ...base, verdict: 'ok', steps: 0, ms: 0 }

  // Entries sorted by time, a call before a return at the same instant (touching ops overlap).
  const entries: Entry[] = []
  for (const op of known) {
    const call: Entry = { op, isCall: true, time: op.invoke, match: undefined, prev: undefined, next: undefined }
    const ret: Entry = { op, isCall: false, time: op.complete, match: call, prev: undefined, next: undefined }
    call.match = ret
    entries.push(call, ret)
  }
  entries.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op.id - b.op.id : a.isCall ? -1 : 1))
  const head: Entry = { op: known[0]!, isCall: false, time: -Infinity, match: undefined, prev: undefined, next: undefined }
  let prev = head
  for (const e of entries) {
    prev.next = e
    e.prev = prev
    prev = e
  }
  const read = new Set<string>()
  for (const op of known) if (op.outcome === 'get' && op.src.got !== undefined) read.add(op.src.got)
  const classes: UnknownClass[] = []
  const unreadPuts: UnknownClass = { ops: [], used: 0 }
  const deletes: UnknownClass = { ops: [], used: 0 }
  for (const op of [...unknownOps].sort((a, b) => a.invoke - b.invoke)) {
    const conditional = op.src.ifMatch !== undefined || op.src.ifNoneMatch === true
    if (!conditional && op.outcome === 'unknown-delete') deletes.ops.push(op)
    else if (!conditional && !read.has(op.src.value ?? '')) {
      op.unread = true
      unreadPuts.ops.push(op)
    } else classes.push({ ops: [op], used: 0 })
  }
  if (unreadPuts.ops.length > 0) classes.unshift(unreadPuts)
  if (deletes.ops.length > 0) classes.unshift(deletes)

  const applied = new Uint32Array((unknownOps.length + 31) >>> 5)
  const z1 = zobrist(n, 0x5eed1)
  const z2 = zobrist(n, 0x5eed2)
  let h1 = 0
  let h2 = 0
  const states = new States()
  const cache = new Cache()
  let state: State = null
  let steps = 0
  /** Known-outcome ops linearized. */
  let depth = 0
  let best: { depth: number, blocking: Op, state: State, recent: Op[] } | undefined
  const stack: Frame[] = []

  const stuckExplanation = (): string => {
    if (best === undefined) return 'no op could be linearized'
    const lines = [
      `${best.depth} of ${n} ops with a known outcome linearized at best (${unknownOps.length} more with an unknown one); then the key held ${showState(best.state)}`,
      `  and this op could not take effect before it completed: ${describeOp(best.blocking.src, origin)}`,
      '  last ops linearized (oldest first):',
      ...best.recent.map((o) => `    ${describeOp(o.src, origin)}`)
    ]
    // Every op overlapping the blocking one: the ones the search could have ordered otherwise.
    const b = best.blocking
    const around = [...known, ...unknownOps].filter((o) => o !== b && o.invoke <= b.complete && o.complete >= b.invoke)
      .sort((x, y) => x.invoke - y.invoke)
    if (around.length > 0) {
      lines.push(`  ops overlapping it (${around.length}${around.length > 16 ? ', the 16 invoked last' : ''}):`)
      for (const o of around.slice(-16)) lines.push(`    ${describeOp(o.src, origin)}`)
    }
    return lines.join('\n')
  }

  const opOf = (c: Candidate): Op => typeof c === 'number' ? classes[c]!.ops[classes[c]!.used - 1]! : c.op

  /**
   * The candidates of the current configuration: the known-outcome ops whose calls come
   * before the first return in the list, tried by completion time (the op that must take
   * effect soonest first: a valid order is found with little backtracking), then the
   * unknown-outcome classes whose next op was invoked by then. An invoked op that changes
   * nothing (a read, a 412) and fits the state is the only candidate: linearizing it now
   * loses no generality (moving it earlier within its interval changes no other op's
   * state) — a partial-order reduction. Right after an unknown-outcome op was applied,
   * a blind write (one whose result does not depend on the state: an unconditional
   * DELETE, or an unconditional unknown-outcome PUT) is no candidate: applying it there
   * reaches a configuration that not applying the unknown op reaches too, with more
   * options left (without this, chains of unknown ops multiply the search).
   */
  const candidatesHere = (afterUnknown: boolean): Candidate[] => {
    const calls: Entry[] = []
    let e = head.next
    while (e !== undefined && e.isCall) {
      const o = e.op.outcome
      if ((o === 'get' || o === 'put-412' || o === 'delete-412') && step(e.op, state) === state) return [e]
      if (!afterUnknown || !blind(e.op)) calls.push(e)
      e = e.next
    }
    const limit = e === undefined ? Infinity : e.time
    if (e !== undefined && (best === undefined || depth > best.depth)) {
      best = { depth, blocking: e.op, state, recent: stack.slice(-8).filter((f) => f.via !== undefined).map((f) => opOf(f.via as Candidate)) }
    }
    const out: Candidate[] = calls.length > 1 ? calls.sort((a, b) => a.op.complete - b.op.complete || a.op.id - b.op.id) : calls
    for (let i = 0; i < classes.length; i++) {
      const cls = classes[i]!
      const op = cls.ops[cls.used]
      if (op !== undefined && op.invoke <= limit && (!afterUnknown || !blind(op))) out.push(i)
    }
    return out
  }

  stack.push({ candidates: candidatesHere(false), next: 0, via: undefined, before: null })
  for (;;) {
    if (head.next === undefined) return { ...base, verdict: 'ok', steps, ms: performance.now() - t0 }
    if (++steps > maxSteps || ((steps & 0xFFF) === 0 && performance.now() - t0 > maxMs)) {
      return {
        ...base,
        verdict: 'inconclusive',
        steps,
        ms: performance.now() - t0,
        explanation: `search budget exhausted (${steps} steps, ${Math.round(performance.now() - t0)} ms, ${cache.size} configurations cached); furthest point: ${stuckExplanation()}`
      }
    }
    const frame = stack[stack.length - 1]
    if (frame === undefined) break
    const c = frame.candidates[frame.next++]
    if (c === undefined) {
      // Every candidate was tried: undo the step that led here.
      stack.pop()
      const via = frame.via
      if (via === undefined) break
      state = frame.before
      if (typeof via === 'number') {
        const cls = classes[via]!
        cls.used--
        clearBit(applied, cls.ops[cls.used]!.id)
      } else {
        const id = via.op.id
        depth--
        h1 = (h1 ^ z1[id]!) >>> 0
        h2 = (h2 ^ z2[id]!) >>> 0
        unlift(via)
      }
      continue
    }
    if (typeof c === 'number') {
      const cls = classes[c]!
      const op = cls.ops[cls.used]!
      const next = step(op, state)
      if (next === undefined || next === state) continue
      setBit(applied, op.id)
      if (!cache.add(h1, h2, states.id(next), applied)) {
        clearBit(applied, op.id)
        continue
      }
      cls.used++
      const before = state
      state = next
      stack.push({ candidates: candidatesHere(true), next: 0, via: c, before })
      continue
    }
    const next = step(c.op, state)
    if (next === undefined) continue
    const id = c.op.id
    const n1 = (h1 ^ z1[id]!) >>> 0
    const n2 = (h2 ^ z2[id]!) >>> 0
    if (!cache.add(n1, n2, states.id(next), applied)) {
      continue
    }
    h1 = n1
    h2 = n2
    depth++
    lift(c)
    const before = state
    state = next
    stack.push({ candidates: candidatesHere(false), next: 0, via: c, before })
  }
  return { ...base, verdict: 'violation', steps, ms: performance.now() - t0, explanation: stuckExplanation() }
}
