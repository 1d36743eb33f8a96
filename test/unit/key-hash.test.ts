import t from 'tap'
import fc from 'fast-check'
import HashRing from 'hashring'
import { keyHash } from '../../src/ring/key-hash'
import { findPoint, GroupRing, vnodesFor } from '../../src/ring/ring'

/** keyHash and findPoint must place every key where hashring's own hashValue() and find() do: the ring format depends on it. */

const ring = new HashRing({ g1: { vnodes: 4 } } as never, 'md5', { 'vnode count': -1, 'max cache size': 1 } as never) as unknown as { hashValue: (key: string) => number }

t.test('every length around the one-block limit, ASCII', async (t) => {
  let bad = 0
  for (let n = 0; n <= 130; n++) {
    for (const fill of ['a', '~', '\u0000', '\u007f']) {
      const key = fill.repeat(n)
      if (keyHash(key) !== ring.hashValue(key)) bad++
    }
  }
  t.equal(bad, 0)
})

t.test('any string: ASCII, any Unicode, lone surrogates, up to 1024 bytes', async (t) => {
  const keys = fc.oneof(
    fc.string({ maxLength: 70 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ minLength: 50, maxLength: 1024 })
  )
  fc.assert(fc.property(keys, (key) => keyHash(key) === ring.hashValue(key)), { numRuns: 5000 })
  t.pass('agrees with hashring')
})

t.test('the first word of the MD5 digest, unsigned', async (t) => {
  t.equal(keyHash(''), 0xd98c1dd4, 'md5("") = d41d8cd9…, read little-endian')
  t.ok(keyHash('é') >= 0)
})

t.test('findPoint finds the point hashring.find does: random hashes, every point and its neighbours, the ends', async (t) => {
  for (const members of [[{ id: 'g1', weight: 1 }], [{ id: 'g1', weight: 1 }, { id: 'g2', weight: 1 }, { id: 'g3', weight: 1 }], [{ id: 'a', weight: 0.001 }, { id: 'b', weight: 2.5 }]]) {
    const ring = new GroupRing(members, { vnodesPerWeight: 64, algorithm: 'md5' })
    const servers = Object.fromEntries(members.map((m) => [m.id, { vnodes: vnodesFor(m.weight, { vnodesPerWeight: 64, algorithm: 'md5' }) }]))
    const hr = new HashRing(servers as never, 'md5', { 'vnode count': -1, 'max cache size': 1 } as never) as unknown as { ring: Array<{ value: number }>, find: (h: number) => number, get: (k: string) => string }
    const points = Uint32Array.from(hr.ring, (n) => n.value)
    const hashes = [0, 1, 0xffffffff, 0xfffffffe]
    for (const p of points) hashes.push(p, (p + 1) >>> 0, (p - 1) >>> 0)
    let bad = hashes.filter((h) => findPoint(points, h) !== hr.find(h)).length
    fc.assert(fc.property(fc.nat({ max: 0xffffffff }), (h) => findPoint(points, h) === hr.find(h)), { numRuns: 3000 })
    for (let i = 0; i < 2000; i++) {
      const key = `k${i}`
      if (ring.ownerOf(key) !== hr.get(key)) bad++
    }
    t.equal(bad, 0, members.map((m) => m.id).join(','))
  }
})
