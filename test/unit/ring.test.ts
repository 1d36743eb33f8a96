import t from 'tap'
import { GroupRing, RING_DEFAULTS, type RingMember } from '../../src/ring/ring'

/**
 * Placement properties of the ring (DESIGN.md guarantee 4, "minimal movement"):
 * balance across equal groups, proportionality to weight, and that adding a group
 * only ever moves keys onto the new group.
 */

const KEYS = 100_000
const keys: string[] = []
for (let i = 0; i < KEYS; i++) keys.push(`user:${i}:${(i * 2654435761) % 1000003}`)

function equalGroups (n: number): RingMember[] {
  return Array.from({ length: n }, (_, i) => ({ id: `g${i + 1}`, weight: 1 }))
}

function counts (ring: GroupRing, sample: readonly string[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const k of sample) {
    const owner = ring.ownerOf(k)
    if (owner === undefined) throw new Error(`no owner for ${k}`)
    out.set(owner, (out.get(owner) ?? 0) + 1)
  }
  return out
}

t.test('the busiest of N equal groups holds at most 1.05x the mean (100k keys)', async (t) => {
  for (let n = 3; n <= 16; n++) {
    const c = counts(new GroupRing(equalGroups(n)), keys)
    t.equal(c.size, n, `N=${n}: every group owns keys`)
    const mean = KEYS / n
    const max = Math.max(...c.values())
    t.ok(max <= 1.05 * mean, `N=${n}: busiest holds ${max} keys = ${(max / mean).toFixed(3)}x the mean ${mean.toFixed(0)}`)
  }
})

t.test('a weight-2 group holds about twice a weight-1 group (within 10%)', async (t) => {
  const layouts: RingMember[][] = [
    [{ id: 'a', weight: 1 }, { id: 'b', weight: 2 }],
    [{ id: 'a', weight: 1 }, { id: 'b', weight: 2 }, { id: 'c', weight: 1 }],
    [{ id: 'a', weight: 1 }, { id: 'c', weight: 1 }, { id: 'd', weight: 1 }, { id: 'b', weight: 2 }]
  ]
  for (const members of layouts) {
    const c = counts(new GroupRing(members), keys)
    const one = c.get('a') ?? 0
    const two = c.get('b') ?? 0
    const ratio = two / one
    t.ok(ratio >= 1.8 && ratio <= 2.2, `${members.map((m) => `${m.id}@${m.weight}`).join(',')}: weight-2/weight-1 = ${ratio.toFixed(3)}`)
  }
})

t.test('adding one group moves keys only onto the new group, about 1/(N+1) of them', async (t) => {
  const sample = keys.slice(0, 50_000)
  for (let n = 2; n <= 15; n++) {
    const before = new GroupRing(equalGroups(n))
    const grown = equalGroups(n + 1)
    const after = new GroupRing(grown)
    const newId = grown[n]!.id
    let moved = 0
    let wrong = 0
    let firstWrong = ''
    for (const k of sample) {
      const a = before.ownerOf(k)
      const b = after.ownerOf(k)
      if (a === b) continue
      if (b === newId) moved++
      else {
        wrong++
        if (firstWrong === '') firstWrong = `${k}: ${String(a)} -> ${String(b)}`
      }
    }
    t.equal(wrong, 0, `N=${n}: no key moves between old groups${firstWrong === '' ? '' : ` (e.g. ${firstWrong})`}`)
    const share = moved / sample.length
    const ideal = 1 / (n + 1)
    t.ok(Math.abs(share - ideal) <= 0.2 * ideal, `N=${n}: moved share ${share.toFixed(4)} within ±20% of ${ideal.toFixed(4)}`)
  }
})

t.test('removing a group moves only that group\'s keys', async (t) => {
  const full = new GroupRing(equalGroups(5))
  const less = new GroupRing(equalGroups(5).filter((g) => g.id !== 'g3'))
  let bad = 0
  for (const k of keys.slice(0, 20_000)) {
    const a = full.ownerOf(k)
    if (a !== 'g3' && less.ownerOf(k) !== a) bad++
  }
  t.equal(bad, 0, 'keys of the remaining groups stay where they were')
})

t.test('the order of members does not change placement', async (t) => {
  const a = new GroupRing(equalGroups(6))
  const b = new GroupRing(equalGroups(6).reverse())
  let diff = 0
  for (const k of keys.slice(0, 10_000)) if (a.ownerOf(k) !== b.ownerOf(k)) diff++
  t.equal(diff, 0)
})

t.test('an empty ring owns nothing', async (t) => {
  const ring = new GroupRing([])
  t.equal(ring.ownerOf('anything'), undefined)
  t.equal(ring.ownerOf(''), undefined)
  t.same([...ring.pointCounts()], [])
})

t.test('point counts follow weight and RING_DEFAULTS', async (t) => {
  const ring = new GroupRing([{ id: 'a', weight: 1 }, { id: 'b', weight: 2 }])
  const points = ring.pointCounts()
  t.ok((points.get('a') ?? 0) > 0)
  t.equal(points.get('b'), 2 * (points.get('a') ?? 0), 'weight 2 has twice the points')
  t.equal(RING_DEFAULTS.algorithm, 'md5')
})

t.test('bad members are refused', async (t) => {
  t.throws(() => new GroupRing([{ id: 'a', weight: 0 }]), RangeError)
  t.throws(() => new GroupRing([{ id: 'a', weight: -1 }]), RangeError)
  t.throws(() => new GroupRing([{ id: 'a', weight: Number.NaN }]), RangeError)
  t.throws(() => new GroupRing([{ id: 'a', weight: Number.POSITIVE_INFINITY }]), RangeError)
  t.throws(() => new GroupRing([{ id: 'a', weight: 1 }, { id: 'a', weight: 1 }]), RangeError)
})

t.test('__proto__, constructor and friends route deterministically and pollute nothing', async (t) => {
  const members = equalGroups(4)
  const ids = new Set(members.map((m) => m.id))
  const specials = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__', '__lookupSetter__']
  const ringA = new GroupRing(members)
  const first = new Map<string, string | undefined>()
  for (const k of specials) {
    const owner = ringA.ownerOf(k)
    t.ok(owner !== undefined && ids.has(owner), `${k} -> a real group (${String(owner)})`)
    first.set(k, owner)
  }
  // Ask again, in another order and on another instance: same answers.
  const ringB = new GroupRing(members)
  for (const k of [...specials].reverse()) {
    t.equal(ringA.ownerOf(k), first.get(k), `${k} is stable on the same ring`)
    t.equal(ringB.ownerOf(k), first.get(k), `${k} is the same on a fresh ring`)
  }
  t.same(Object.keys(Object.prototype), [], 'Object.prototype gained no enumerable keys')
  t.equal(Object.getPrototypeOf({}), Object.prototype, '{} still has Object.prototype')
  t.equal(({}).constructor, Object, '({}).constructor is still Object')
  t.equal(typeof ({}).hasOwnProperty, 'function', 'hasOwnProperty is still a function')
  t.equal(typeof ({}).toString, 'function', 'toString is still a function')
  const probe: Record<string, unknown> = {}
  t.equal(probe['g1'], undefined, 'no group id leaked onto plain objects')
})
