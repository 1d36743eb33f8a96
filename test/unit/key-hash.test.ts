import t from 'tap'
import fc from 'fast-check'
import HashRing from 'hashring'
import { keyHash } from '../../src/ring/key-hash'

/** keyHash must place every key where hashring's own hashValue() does: the ring format depends on it. */

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
