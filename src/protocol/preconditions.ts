import { ShardKvError } from './errors'

/**
 * Conditional requests (RFC 9110 §13) reduced to what a key-value store needs.
 * A version is an opaque string; its ETag is the version in double quotes and is
 * always strong, because a version names exactly one stored byte sequence.
 */

export type EntityTagSet = '*' | readonly string[]

export interface WriteConditions {
  /** `If-Match`: the write applies only if the current version is one of these (or `*`: exists). */
  ifMatch?: EntityTagSet | undefined
  /** `If-None-Match`: the write applies only if the current version is none of these (`*`: absent). */
  ifNoneMatch?: EntityTagSet | undefined
}

export function formatEtag (version: string): string {
  return `"${version}"`
}

/**
 * Parses an If-Match / If-None-Match header value: `*` or a comma-separated list of
 * entity tags. Weak tags (`W/"…"`) are kept with their prefix so they never equal a
 * strong version; If-Match uses strong comparison per RFC 9110.
 */
export function parseEtagList (header: string | string[] | undefined, name: string): EntityTagSet | undefined {
  if (header === undefined) return undefined
  const value = Array.isArray(header) ? header.join(',') : header
  const trimmed = value.trim()
  if (trimmed === '*') return '*'
  const tags: string[] = []
  const re = /\s*(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(,|$)/y
  let pos = 0
  while (pos < trimmed.length) {
    re.lastIndex = pos
    const m = re.exec(trimmed)
    if (m === null) {
      throw new ShardKvError('invalid_header', `${name} must be * or a list of quoted entity tags`)
    }
    tags.push(m[1] === undefined ? (m[2] as string) : `W/${m[2] as string}`)
    pos = re.lastIndex
  }
  if (tags.length === 0) {
    throw new ShardKvError('invalid_header', `${name} must be * or a list of quoted entity tags`)
  }
  return tags
}

function matches (set: EntityTagSet, current: string | undefined): boolean {
  if (current === undefined) return false
  if (set === '*') return true
  return set.includes(current)
}

/**
 * Decides whether a write may apply given the current version of the key
 * (`undefined` when the key is absent or deleted). Pure, so the storage layer can
 * call it inside the write's own transaction.
 */
export function writeAllowed (conditions: WriteConditions, current: string | undefined): boolean {
  if (conditions.ifMatch !== undefined && !matches(conditions.ifMatch, current)) return false
  if (conditions.ifNoneMatch !== undefined) {
    if (conditions.ifNoneMatch === '*') return current === undefined
    if (matches(conditions.ifNoneMatch, current)) return false
  }
  return true
}

/** For GET: true when the client's cached copy (If-None-Match) is still current (304). */
export function notModified (ifNoneMatch: EntityTagSet | undefined, current: string): boolean {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch === '*') return true
  // Weak comparison for GET: W/"x" matches "x".
  for (const tag of ifNoneMatch) {
    if (tag === current || tag === `W/${current}`) return true
  }
  return false
}

export function hasConditions (c: WriteConditions): boolean {
  return c.ifMatch !== undefined || c.ifNoneMatch !== undefined
}
