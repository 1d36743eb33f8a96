import { md5Words } from './key-hash'

/**
 * The ketama continuum of `hashring` 3.2.0 (the ring format shardkv persists), built
 * without it: the same points, in the same order, so every key keeps its owner
 * (test/unit/continuum.test.ts compares the two on random memberships).
 *
 * hashring hashes each virtual node's label `<id>-<i>` with MD5 and takes the digest's four
 * little-endian words as four points, servers in the order of their object's keys and
 * virtual nodes in order, then sorts the points with a stable sort (equal points keep
 * that order). Built its way — a Hash object, a digest Buffer and a node object per virtual
 * node, and a comparator sort of the objects — a 4-group ring took 100–190 ms, in every
 * process, at once, on each map change that adds or removes a group: long enough for
 * lease renewals and health checks to time out across the cluster. Here the labels go
 * through key-hash.ts's allocation-free MD5 and the points through a two-pass radix sort,
 * which is stable.
 */

export interface Continuum {
  /** Point values in ring order. */
  points: Uint32Array
  /** The groups, in hashring's order. */
  ids: string[]
  /** Each point's group, as an index into `ids` (a map has at most MAX_GROUPS = 1024 groups). */
  owners: Uint16Array
}

/** `vnodes[id]`: how many virtual nodes each group has (at least one each). */
export function buildContinuum (vnodes: Readonly<Record<string, number>>): Continuum {
  if (Object.keys(vnodes).length > 0x10000) throw new RangeError('a ring holds at most 65536 groups')
  // Object.keys, as hashring reads its servers: the order that breaks ties between points.
  const ids = Object.keys(vnodes)
  const total = ids.reduce((sum, id) => sum + 4 * (vnodes[id] as number), 0)
  const values = new Uint32Array(total)
  const groupOf = new Uint16Array(total)
  let at = 0
  ids.forEach((id, g) => {
    const count = vnodes[id] as number
    for (let i = 0; i < count; i++) {
      const words = md5Words(`${id}-${i}`)
      for (let j = 0; j < 4; j++) {
        values[at] = words[j] as number
        groupOf[at++] = g
      }
    }
  })
  const order = stableOrder(values)
  const points = new Uint32Array(total)
  const owners = new Uint16Array(total)
  for (let k = 0; k < total; k++) {
    const i = order[k] as number
    points[k] = values[i] as number
    owners[k] = groupOf[i] as number
  }
  return { points, ids, owners }
}

/** The indices of `values` in ascending order of value, equal values in index order (LSD radix, 16 bits a pass). */
export function stableOrder (values: Uint32Array): Uint32Array {
  const n = values.length
  let order = new Uint32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  let next = new Uint32Array(n)
  const starts = new Uint32Array(0x10001)
  for (const shift of [0, 16]) {
    starts.fill(0)
    for (let i = 0; i < n; i++) {
      const bucket = (((values[i] as number) >>> shift) & 0xffff) + 1
      starts[bucket] = (starts[bucket] as number) + 1
    }
    for (let b = 0; b < 0x10000; b++) starts[b + 1] = (starts[b + 1] as number) + (starts[b] as number)
    for (let k = 0; k < n; k++) {
      const i = order[k] as number
      const bucket = ((values[i] as number) >>> shift) & 0xffff
      next[starts[bucket] as number] = i
      starts[bucket] = (starts[bucket] as number) + 1
    }
    const done = next
    next = order
    order = done
  }
  return order
}
