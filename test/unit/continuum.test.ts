import t from 'tap'
import fc from 'fast-check'
import HashRing from 'hashring'
import { buildContinuum, stableOrder } from '../../src/ring/continuum'
import { GroupRing, RING_DEFAULTS, vnodesFor, type RingMember } from '../../src/ring/ring'

/**
 * The ring format is hashring 3.2.0's: buildContinuum must give the very points, in the
 * very order, that hashring builds for the same groups, or keys would change owner on an
 * upgrade. hashring stays here as the format's reference.
 */

interface HashRingPoints { ring: Array<{ value: number, server: string }> }

function hashringOf (vnodes: Record<string, number>): HashRingPoints {
  const servers: Record<string, { vnodes: number }> = {}
  for (const [id, count] of Object.entries(vnodes)) servers[id] = { vnodes: count }
  return new HashRing(servers as never, 'md5', { 'vnode count': -1, 'max cache size': 1 } as never) as unknown as HashRingPoints
}

/** Indices of the first mismatch between the two rings (none: []), and how many equal neighbours (ties) the ring has. */
function compare (vnodes: Record<string, number>): { mismatches: number[], ties: number, size: number } {
  const ours = buildContinuum(vnodes)
  const theirs = hashringOf(vnodes).ring
  const mismatches: number[] = []
  if (ours.points.length !== theirs.length) mismatches.push(-1)
  for (let i = 0; i < theirs.length && mismatches.length < 5; i++) {
    if (ours.points[i] !== theirs[i]?.value || ours.ids[ours.owners[i] as number] !== theirs[i]?.server) mismatches.push(i)
  }
  let ties = 0
  for (let i = 1; i < ours.points.length; i++) if (ours.points[i] === ours.points[i - 1]) ties++
  return { mismatches, ties, size: theirs.length }
}

const vnodesOf = (members: RingMember[]): Record<string, number> => Object.fromEntries(members.map((m) => [m.id, vnodesFor(m.weight, RING_DEFAULTS)]))

t.test('the default rings of 1..16 equal groups are hashring\'s, point for point, ties included', async (t) => {
  let ties = 0
  for (let n = 1; n <= 16; n++) {
    const result = compare(vnodesOf(Array.from({ length: n }, (_, i) => ({ id: `g${i + 1}`, weight: 1 }))))
    t.same(result.mismatches, [], `${n} groups: ${result.size} points, ${result.ties} equal neighbours`)
    ties += result.ties
  }
  // Equal points are where a sort's stability shows: these rings must have some.
  t.ok(ties > 0, `${ties} pairs of equal points compared`)
})

t.test('any membership: ids of the map\'s alphabet (integer-like ones sort first in hashring\'s key order), any weights', async (t) => {
  const id = fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,12}$/), fc.nat({ max: 40 }).map(String))
  const members = fc.uniqueArray(fc.record({ id, vnodes: fc.integer({ min: 1, max: 300 }) }), { minLength: 0, maxLength: 8, selector: (m) => m.id })
  fc.assert(fc.property(members, (list) => compare(Object.fromEntries(list.map((m) => [m.id, m.vnodes]))).mismatches.length === 0), { numRuns: 300 })
  t.pass('agrees with hashring')
})

t.test('a GroupRing places keys where hashring does', async (t) => {
  const members: RingMember[] = [{ id: 'a', weight: 0.001 }, { id: '7', weight: 2.5 }, { id: 'g-3', weight: 1 }]
  const ring = new GroupRing(members, { vnodesPerWeight: 64, algorithm: 'md5' })
  const theirs = hashringOf(Object.fromEntries(members.map((m) => [m.id, vnodesFor(m.weight, { vnodesPerWeight: 64, algorithm: 'md5' })]))) as unknown as { get: (key: string) => string }
  const wrong = Array.from({ length: 5000 }, (_, i) => `user:${i}`).filter((key) => ring.ownerOf(key) !== theirs.get(key))
  t.same(wrong, [])
  t.same(Object.fromEntries(ring.pointCounts()), { a: 4, 7: 640, 'g-3': 256 }, 'points per group: 4 per virtual node')
})

t.test('stableOrder: ascending, equal values in index order', async (t) => {
  fc.assert(fc.property(fc.array(fc.oneof(fc.nat({ max: 5 }), fc.nat({ max: 0xffffffff }), fc.constantFrom(0xffff, 0x10000, 0xffffffff)), { maxLength: 400 }), (list) => {
    const values = Uint32Array.from(list)
    const expected = Array.from(values.keys()).sort((a, b) => (values[a] as number) - (values[b] as number) || a - b)
    return Array.from(stableOrder(values)).join() === expected.join()
  }), { numRuns: 500 })
  t.same(Array.from(stableOrder(new Uint32Array(0))), [], 'empty')
})
