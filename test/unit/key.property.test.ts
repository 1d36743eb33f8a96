import t from 'tap'
import fc from 'fast-check'
import { decodeKeySegment, keyFromUrl, kvPath, validateKey, MAX_KEY_BYTES } from '../../src/protocol/key'
import { anyString, codedOrValue, holds, stringOf } from './properties'

/** Keys (src/protocol/key.ts): every URL a client sends goes through keyFromUrl. */

const validKey = fc.string({ unit: 'binary', minLength: 1, maxLength: 300 }).filter((k) => Buffer.byteLength(k) <= MAX_KEY_BYTES)

t.test('arbitrary input: a key or invalid_key, nothing else', async (t) => {
  holds(t, 'keyFromUrl', [anyString], (s) => { codedOrValue(() => keyFromUrl(s), ['invalid_key']) })
  holds(t, 'keyFromUrl under /kv/', [anyString], (s) => { codedOrValue(() => keyFromUrl('/kv/' + s), ['invalid_key']) })
  holds(t, 'percent-heavy segments', [stringOf('%0aFfzZ/?#é\u00ff')], (s) => { codedOrValue(() => decodeKeySegment(s), ['invalid_key']) })
  holds(t, 'validateKey', [anyString], (s) => { codedOrValue(() => validateKey(s), ['invalid_key']) })
})

t.test('accepted keys satisfy the grammar', async (t) => {
  holds(t, '1..1024 bytes of well-formed UTF-8, one segment', [fc.oneof(anyString, stringOf('%0aFf2/é'))], (s) => {
    const key = codedOrValue(() => keyFromUrl('/kv/' + s), ['invalid_key'])
    if (key === undefined) return
    const bytes = Buffer.byteLength(key)
    return key.length > 0 && bytes <= MAX_KEY_BYTES && key.isWellFormed() && !s.split(/[?#]/)[0]?.includes('/')
  })
})

t.test('round trip: keyFromUrl(kvPath(k)) is k', async (t) => {
  holds(t, 'any valid key', [validKey], (k) => keyFromUrl(kvPath(k)) === k)
  holds(t, 'with a query or fragment after it', [validKey, anyString], (k, q) => keyFromUrl(`${kvPath(k)}?${q}`) === k && keyFromUrl(`${kvPath(k)}#${q}`) === k)
})
