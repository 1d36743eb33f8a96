import HashRing from 'hashring'
import { keyHash } from './key-hash'

/**
 * The placement of keys on shard groups: a ketama ring built by `hashring`.
 *
 * Three things in hashring 3.2.0 are designed around here:
 *  1. Without explicit per-server `vnodes`, the point count is
 *     `Math.floor(weight / total * 40 * N)`, which rounds to 39 instead of 40 at
 *     N = 7, 14, 28, …; growing across those sizes moves keys between unchanged
 *     groups (upstream issue #43). Every group here gets an explicit count, and
 *     the `vnode count` option is set to -1 because hashring ignores an explicit
 *     count that equals that option (default 40).
 *  2. 160 points per server leave the busiest group at up to 1.21× the mean;
 *     RING_DEFAULTS.vnodesPerWeight is sized so the busiest of 3..16 equal groups
 *     holds at most 1.05× the mean (test/unit/ring.test.ts proves it).
 *  3. `get()` caches answers in an LRU that stores entries on a plain object, so a
 *     key named `__proto__` or `constructor` pollutes `Object.prototype` / `Object`
 *     and pins a stale owner. We never call `get()`: owners are computed from the
 *     public `find()` without the cache, on the key's point from key-hash.ts (the
 *     value of hashring's `hashValue()`, computed without allocating). (Its typings
 *     also claim `get()` always returns a string; on an empty ring it returns undefined.)
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

interface RingNode { value: number, server: string }
interface HashRingInternals {
  ring: RingNode[]
  find: (hashValue: number) => number
  hashValue: (key: string) => number
}

export function vnodesFor (weight: number, params: RingParams): number {
  return Math.max(1, Math.round(weight * params.vnodesPerWeight))
}

export class GroupRing {
  readonly params: RingParams
  readonly members: readonly RingMember[]
  private readonly ring: HashRingInternals
  private readonly size: number
  /** The ring's point values in ring order, and each point's group: searched without touching hashring's node objects. */
  private readonly points: Uint32Array
  private readonly owners: readonly string[]

  constructor (members: readonly RingMember[], params: RingParams = RING_DEFAULTS) {
    this.params = params
    this.members = members
    const servers: Record<string, { vnodes: number }> = {}
    for (const m of members) {
      if (!(m.weight > 0) || !Number.isFinite(m.weight)) {
        throw new RangeError(`group ${m.id}: weight must be a positive number`)
      }
      if (Object.prototype.hasOwnProperty.call(servers, m.id)) {
        throw new RangeError(`group ${m.id} appears twice on the ring`)
      }
      servers[m.id] = { vnodes: vnodesFor(m.weight, params) }
    }
    const hr = new HashRing(servers as never, params.algorithm, { 'vnode count': -1, 'max cache size': 1 } as never)
    this.ring = hr as unknown as HashRingInternals
    this.size = this.ring.ring.length
    this.points = Uint32Array.from(this.ring.ring, (n) => n.value)
    this.owners = this.ring.ring.map((n) => n.server)
  }

  /** The group that owns `key`, or undefined when the ring is empty. */
  ownerOf (key: string): string | undefined {
    if (this.size === 0) return undefined
    // keyHash and findPoint are hashring's hashValue (md5, the only algorithm) and find,
    // without their allocations and object lookups: every routed key runs them twice.
    return this.owners[findPoint(this.points, keyHash(key))]
  }

  /** Ring points held by each group (for `GET /cluster` and tests). */
  pointCounts (): Map<string, number> {
    const out = new Map<string, number>()
    for (const n of this.ring.ring) out.set(n.server, (out.get(n.server) ?? 0) + 1)
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
