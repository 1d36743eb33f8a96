import { checkKey, type KeyResult, type LinOp, type LinOptions, type LinReport } from './linearizability'

/**
 * The history side of the linearizability checker (./linearizability.ts holds the per-key
 * search): checking a whole history key by key, collecting one as a load runs, and
 * adding the verdict to a load's pairwise report.
 */

/** Checks a whole history, key by key. */
export function checkLinearizable (history: readonly LinOp[], options: LinOptions = {}): LinReport {
  const t0 = performance.now()
  const byKey = new Map<string, LinOp[]>()
  let origin = options.originMs ?? Infinity
  for (const op of history) {
    let list = byKey.get(op.key)
    if (list === undefined) byKey.set(op.key, list = [])
    list.push(op)
    if (options.originMs === undefined) origin = Math.min(origin, op.invokeMs)
  }
  if (!Number.isFinite(origin)) origin = 0
  const violations: KeyResult[] = []
  const inconclusive: KeyResult[] = []
  let ops = 0
  let unknown = 0
  let worstKey: LinReport['worstKey']
  for (const [key, list] of byKey) {
    const r = checkKey(key, list, { ...options, originMs: origin })
    ops += r.ops
    unknown += r.unknown
    if (worstKey === undefined || r.ms > worstKey.ms) worstKey = { key, ms: r.ms, steps: r.steps }
    if (r.verdict === 'violation') violations.push(r)
    else if (r.verdict === 'inconclusive') inconclusive.push(r)
  }
  const ms = performance.now() - t0
  const head = `linearizability: ${byKey.size} keys, ${ops} ops (${unknown} with unknown outcome) checked in ${Math.round(ms)} ms` +
    (worstKey === undefined ? '' : ` (slowest key ${JSON.stringify(worstKey.key)}: ${Math.round(worstKey.ms)} ms, ${worstKey.steps} steps)`) +
    `; ${violations.length} non-linearizable key(s), ${inconclusive.length} inconclusive`
  const parts = [head]
  for (const v of violations.slice(0, 10)) parts.push(`NOT LINEARIZABLE key ${JSON.stringify(v.key)} (${v.ops} ops, ${v.unknown} unknown): ${v.explanation ?? ''}`)
  if (violations.length > 10) parts.push(`… and ${violations.length - 10} more non-linearizable keys: ${violations.slice(10).map((v) => JSON.stringify(v.key)).join(', ')}`)
  for (const v of inconclusive.slice(0, 5)) parts.push(`INCONCLUSIVE key ${JSON.stringify(v.key)} (${v.ops} ops, ${v.unknown} unknown): ${v.explanation ?? ''}`)
  return { ok: violations.length === 0, keys: byKey.size, ops, unknown, violations, inconclusive, ms, worstKey, text: parts.join('\n') }
}

/**
 * Collects a history as a load runs: `invoke` when a request is sent, then exactly one of
 * `ok` (an answer: status, body, ETag) or `unknown` (no answer: network error, timeout).
 * Times come from performance.now().
 */
export class LinHistory {
  readonly ops: LinOp[] = []
  readonly origin = performance.now()

  invoke (op: Omit<LinOp, 'invokeMs'>): LinOp {
    const o: LinOp = { ...op, invokeMs: performance.now() }
    this.ops.push(o)
    return o
  }

  /** An answer arrived. */
  ok (op: LinOp, status: number, answer: { got?: string, etag?: string, note?: string } = {}): void {
    op.completeMs = performance.now()
    op.status = status
    if (answer.got !== undefined) op.got = answer.got
    if (answer.etag !== undefined) op.etag = answer.etag
    if (answer.note !== undefined) op.note = answer.note
  }

  /** No answer (or no usable one): the op's outcome is unknown. */
  unknown (op: LinOp, note?: string): void {
    op.status = undefined
    op.completeMs = undefined
    if (note !== undefined) op.note = note
  }

  check (options: LinOptions = {}): LinReport {
    return checkLinearizable(this.ops, { originMs: this.origin, ...options })
  }
}

/**
 * A load's pairwise report (./checker.ts) with the linearizability search over the same
 * load's history: a non-linearizable key fails `ok` and is explained in `text`; an
 * inconclusive key is told in `text` (and counted in `linearizability`) without failing.
 */
export function withLinearizability<R extends { ok: boolean, text: string }> (report: R, lin: LinReport): R & { linearizability: LinReport } {
  const clean = lin.violations.length === 0 && lin.inconclusive.length === 0
  return {
    ...report,
    ok: report.ok && lin.ok,
    text: clean ? report.text : `${report.text}\n${lin.text}`,
    linearizability: lin
  }
}
