/**
 * The model the linearizability search (./linearizability.ts) checks histories against: a
 * register per key, and what each answer of the data API says about it (see the search's
 * header for the rules). Pure.
 */

export type LinKind = 'put' | 'delete' | 'get'

/** One operation as a client saw it. Times are ms on one monotonic clock (performance.now()). */
export interface LinOp {
  key: string
  /** Who ran it (for the explanation only). */
  client: number | string
  kind: LinKind
  /** PUT: the value written (values should be unique per run). */
  value?: string
  /** PUT/DELETE with `If-Match: <etag>`. */
  ifMatch?: string
  /** PUT with `If-None-Match: *`. */
  ifNoneMatch?: boolean
  invokeMs: number
  /** Undefined when the outcome is unknown. */
  completeMs?: number
  /** The answer's status; undefined (no answer) or 5xx: outcome unknown. */
  status?: number
  /** GET 200: the body. */
  got?: string
  /** The answer's ETag (PUT 2xx, GET 200), when it had one. */
  etag?: string
  /** Free text for the explanation (e.g. 'final read', an error). */
  note?: string
}

export type KeyVerdict = 'ok' | 'violation' | 'inconclusive'

export interface KeyResult {
  key: string
  verdict: KeyVerdict
  /** Ops of this key the search ran over (after dropping refused writes and unknown GETs). */
  ops: number
  unknown: number
  /** Model steps tried. */
  steps: number
  ms: number
  /** For a violation or an inconclusive key: what the search saw where it got stuck. */
  explanation?: string
}

export interface LinOptions {
  /** Model steps per key before giving up (default 2,000,000). */
  maxStepsPerKey?: number
  /** Wall time per key before giving up (default 10 s). */
  maxMsPerKey?: number
  /** Time origin for the explanation's timestamps (default: the earliest invocation). */
  originMs?: number
}

export interface LinReport {
  /** No key is proven non-linearizable (inconclusive keys are counted apart). */
  ok: boolean
  keys: number
  ops: number
  unknown: number
  violations: KeyResult[]
  inconclusive: KeyResult[]
  ms: number
  worstKey: { key: string, ms: number, steps: number } | undefined
  /** One line of counts, then every violation's and inconclusive key's explanation. */
  text: string
}

// ---------------------------------------------------------------------------------
// The model

export interface Present { value: string, etag: string | undefined }
/** null: absent. */
export type State = Present | null

export type Outcome = 'put' | 'delete' | 'get' | 'put-412' | 'delete-412' | 'unknown-put' | 'unknown-delete'

export interface Op {
  /** Index among the key's ops with a known outcome, or among those with an unknown one. */
  id: number
  /** An unknown-outcome PUT whose value nobody read: its value is irrelevant. */
  unread?: boolean
  src: LinOp
  outcome: Outcome
  invoke: number
  complete: number
}

/** A condition's verdict in a state; `undefined` when the model does not know the ETag it needs. */
/** The state after an unknown-outcome PUT of a value no read returned: present, value irrelevant. */
export const UNREAD: Present = { value: '\u0000a value no read returned', etag: undefined }

export function conditionHolds (op: LinOp, s: State): boolean | undefined {
  if (op.ifNoneMatch === true && s !== null) return false
  if (op.ifMatch !== undefined) {
    if (s === null) return false
    if (s.etag === undefined) return undefined
    if (s.etag !== op.ifMatch) return false
  }
  return true
}

/**
 * The register: the state after `op` in `s`, or undefined when `op`'s answer is
 * impossible in `s`. An unknown-outcome write is applied when its condition holds (or
 * may hold); the "never applied" branch is taking effect after everything else.
 */
export function step (op: Op, s: State): State | undefined {
  const o = op.src
  switch (op.outcome) {
    case 'get':
      if (o.status === 404) return s === null ? s : undefined
      if (s === null || s.value !== o.got) return undefined
      if (o.etag !== undefined && s.etag !== undefined && s.etag !== o.etag) return undefined
      // A read that learns the ETag of a value written with an unknown outcome refines the state.
      if (o.etag !== undefined && s.etag === undefined) return { value: s.value, etag: o.etag }
      return s
    case 'put': {
      if (o.status === 201 ? s !== null : s === null) return undefined
      if (conditionHolds(o, s) === false) return undefined
      return { value: o.value ?? '', etag: o.etag }
    }
    case 'delete':
      if (conditionHolds(o, s) === false) return undefined
      return null
    case 'put-412':
    case 'delete-412':
      return conditionHolds(o, s) === true ? undefined : s
    case 'unknown-put':
      if (conditionHolds(o, s) === false) return s
      return op.unread === true ? UNREAD : { value: o.value ?? '', etag: undefined }
    case 'unknown-delete':
      return conditionHolds(o, s) === false ? s : null
  }
}

/** A write whose result does not depend on the state it applies to. */
export function blind (op: Op): boolean {
  const o = op.src
  if (o.ifMatch !== undefined || o.ifNoneMatch === true) return false
  return op.outcome === 'delete' || op.outcome === 'unknown-delete' || op.outcome === 'unknown-put'
}

export function classify (o: LinOp): Outcome | undefined {
  const unknown = o.status === undefined || o.status >= 500 || o.completeMs === undefined
  if (o.kind === 'get') {
    if (unknown) return undefined
    return o.status === 200 || o.status === 404 ? 'get' : undefined
  }
  if (unknown) return o.kind === 'put' ? 'unknown-put' : 'unknown-delete'
  const status = o.status as number
  if (o.kind === 'put') {
    if (status === 200 || status === 201) return 'put'
    if (status === 412) return 'put-412'
    if (status >= 200 && status < 300) return 'put' // another 2xx: only "now holds v"
    return undefined
  }
  if (status >= 200 && status < 300) return 'delete'
  if (status === 412) return 'delete-412'
  return undefined
}

// ---------------------------------------------------------------------------------
// The search

