import { keyHash } from './key-hash'
import { buildContinuum } from './continuum'

/**
 * The placement of keys on shard groups: a ketama ring in the format of `hashring` 3.2.0,
 * the ring format shardkv persists (built by continuum.ts, searched by findPoint, each
 * key's point from key-hash.ts; the tests compare all three with hashring itself).
 *
 * Two things in hashring's format are designed around here:
 *  1. Without explicit per-server `vnodes`, hashring's point count is
 *     `Math.floor(weight / total * 40 * N)`, which rounds to 39 instead of 40 at
 *     N = 7, 14, 28, …; growing across those sizes moves keys between unchanged
 *     groups (upstream issue #43). Every group here has an explicit count.
 *  2. 160 points per server leave the busiest group at up to 1.21× the mean;
 *     RING_DEFAULTS.vnodesPerWeight is sized so the busiest of 3..16 equal groups
 *     holds at most 1.05× the mean (test/unit/ring.test.ts proves it).
 * (hashring's own `get()` cached answers on a plain object, so a key named `__proto__`
 * polluted `Object.prototype`; nothing here caches per key.)
 */

export interface RingParams {
  /** Ring points (hashes; hashring adds 4 points per hash) per unit of group weight. */
  vnodesPerWeight: number
  /** Digest used for both points and keys. Persisted so that it can never drift. */
  algorithm: 'md5'
}

export const RING_DEFAULTS: RingParams = { vnodesPerWeight: 2048, algorithm: 'md5' }

export interface RingMember {
  id: string
  weight: number
}

export function vnodesFor (weight: number, params: RingParams): number {
  return Math.max(1, Math.round(weight * params.vnodesPerWeight))
}

export class GroupRing {
  readonly params: RingParams
  readonly members: readonly RingMember[]
  /** The ring's point values in ring order, and each point's group (an index into `ids`). */
  private readonly points: Uint32Array
  private readonly owners: Uint16Array
  private readonly ids: readonly string[]

  constructor (members: readonly RingMember[], params: RingParams = RING_DEFAULTS) {
    this.params = params
    this.members = members
    const vnodes: Record<string, number> = {}
    for (const m of members) {
      if (!(m.weight > 0) || !Number.isFinite(m.weight)) {
        throw new RangeError(`group ${m.id}: weight must be a positive number`)
      }
      if (Object.prototype.hasOwnProperty.call(vnodes, m.id)) {
        throw new RangeError(`group ${m.id} appears twice on the ring`)
      }
      vnodes[m.id] = vnodesFor(m.weight, params)
    }
    const continuum = buildContinuum(vnodes)
    this.points = continuum.points
    this.owners = continuum.owners
    this.ids = continuum.ids
  }

  /** The group that owns `key`, or undefined when the ring is empty. */
  ownerOf (key: string): string | undefined {
    if (this.points.length === 0) return undefined
    // keyHash and findPoint are hashring's hashValue (md5, the only algorithm) and find,
    // without their allocations and object lookups: every routed key runs them twice.
    return this.ids[this.owners[findPoint(this.points, keyHash(key))] as number]
  }

  /** Ring points held by each group (for `GET /cluster` and tests). */
  pointCounts (): Map<string, number> {
    const out = new Map<string, number>()
    for (const owner of this.owners) {
      const id = this.ids[owner] as string
      out.set(id, (out.get(id) ?? 0) + 1)
    }
    return out
  }
}

/**
 * hashring 3.2.0's `find()`, step for step (its quirks included: an exact copy places every
 * key where it did), over a typed array: the index of the point that owns `hash`.
 */
export function findPoint (points: Uint32Array, hash: number): number {
  const size = points.length
  let low = 0
  let high = size
  for (;;) {
    const mid = (low + high) >> 1
    if (mid === size) return 0
    const middle = points[mid] as number
    const prev = mid === 0 ? 0 : points[mid - 1] as number
    if (hash <= middle && hash > prev) return mid
    if (middle < hash) low = mid + 1
    else high = mid - 1
    if (low > high) return 0
  }
}

const RING_CACHE_SIZE = 8
const ringCache = new Map<string, GroupRing>()

/**
 * A ring for these members, shared with earlier callers that asked for the same one.
 * Every map change rebuilds the rings of the router and of every shard worker, and
 * most of them (the previous ring of a handover, a failover that changes no member)
 * are rings built moments before; building one costs tens of milliseconds.
 */
export function ringFor (members: readonly RingMember[], params: RingParams = RING_DEFAULTS): GroupRing {
  const key = JSON.stringify([params.vnodesPerWeight, params.algorithm, members.map((m) => [m.id, m.weight])])
  let ring = ringCache.get(key)
  if (ring === undefined) {
    ring = new GroupRing(members, params)
    if (ringCache.size >= RING_CACHE_SIZE) ringCache.delete(ringCache.keys().next().value as string)
  } else {
    ringCache.delete(key)
  }
  ringCache.set(key, ring)
  return ring
}
