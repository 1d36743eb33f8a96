import t from 'tap'
import { keyFromUrl, kvPath, validateKey, decodeKeySegment, MAX_KEY_BYTES } from '../../src/protocol/key'
import { ShardKvError } from '../../src/protocol/errors'

function invalid (t: tap.Test, fn: () => unknown, what: string): void {
  try {
    const got = fn()
    t.fail(`${what}: expected invalid_key, got ${JSON.stringify(got)}`)
  } catch (err) {
    t.ok(err instanceof ShardKvError, `${what}: throws ShardKvError`)
    t.equal((err as ShardKvError).code, 'invalid_key', `${what}: code invalid_key`)
    t.equal((err as ShardKvError).status, 400, `${what}: status 400`)
  }
}

t.test('plain, encoded and unicode keys decode', async (t) => {
  t.equal(keyFromUrl('/kv/abc'), 'abc')
  t.equal(keyFromUrl('/kv/a%2Fb'), 'a/b', 'encoded slash is part of the key')
  t.equal(keyFromUrl('/kv/a%2fb'), 'a/b', 'lower-case hex too')
  t.equal(keyFromUrl('/kv/hello%20world'), 'hello world', 'space')
  t.equal(keyFromUrl('/kv/a+b'), 'a+b', '+ is not a space in a path')
  t.equal(keyFromUrl('/kv/' + encodeURIComponent('ключ-🔑-键')), 'ключ-🔑-键', 'unicode')
  t.equal(keyFromUrl('/kv/%25'), '%', 'an encoded percent sign')
  t.equal(keyFromUrl('/kv/abc?x=1&y=2'), 'abc', 'query string ignored')
  t.equal(keyFromUrl('/kv/abc#frag'), 'abc', 'fragment ignored')
  t.equal(keyFromUrl('/kv/a%3Fb'), 'a?b', 'encoded ? is part of the key')
})

t.test('kvPath and keyFromUrl round-trip', async (t) => {
  const samples = ['a', 'a/b/c', ' ', 'x y', '%', '?#&=', '__proto__', 'ключ', '🔑', 'é'.normalize('NFD'), '\u0000nul', 'k'.repeat(MAX_KEY_BYTES)]
  for (const k of samples) {
    const path = kvPath(k)
    t.ok(path.startsWith('/kv/') && !path.slice(4).includes('/'), `${JSON.stringify(k).slice(0, 30)}: one segment`)
    t.equal(keyFromUrl(path), k, `${JSON.stringify(k).slice(0, 30)}: round-trips`)
  }
})

t.test('empty keys are refused', async (t) => {
  invalid(t, () => keyFromUrl('/kv/'), 'empty segment')
  invalid(t, () => keyFromUrl('/kv/?x=1'), 'empty segment with query')
  invalid(t, () => decodeKeySegment(''), 'decodeKeySegment("")')
  invalid(t, () => validateKey(''), 'validateKey("")')
})

t.test('raw slashes and other prefixes are refused', async (t) => {
  invalid(t, () => keyFromUrl('/kv/a/b'), 'two segments')
  invalid(t, () => keyFromUrl('/kv/a/'), 'trailing slash')
  invalid(t, () => keyFromUrl('/kv'), 'no prefix slash')
  invalid(t, () => keyFromUrl('/other/a'), 'other path')
})

t.test('1024 bytes of UTF-8 is the limit', async (t) => {
  t.equal(keyFromUrl('/kv/' + 'a'.repeat(1024)), 'a'.repeat(1024), '1024 ASCII bytes ok')
  invalid(t, () => keyFromUrl('/kv/' + 'a'.repeat(1025)), '1025 ASCII bytes')
  // '€' is 3 bytes: 341 * 3 + 1 = 1024, 342 * 3 = 1026.
  const euro1024 = '€'.repeat(341) + 'a'
  t.equal(Buffer.byteLength(euro1024), 1024)
  t.equal(keyFromUrl(kvPath(euro1024)), euro1024, '1024 bytes of multi-byte UTF-8 ok')
  invalid(t, () => keyFromUrl(kvPath('€'.repeat(341) + 'ab')), '1025 bytes of multi-byte UTF-8')
  // 4-byte characters: 256 of them is 1024 bytes but only 512 UTF-16 units.
  t.equal(keyFromUrl(kvPath('🔑'.repeat(256))), '🔑'.repeat(256), '256 emoji = 1024 bytes ok')
  invalid(t, () => keyFromUrl(kvPath('🔑'.repeat(256) + 'a')), '1025 bytes of emoji')
  // Byte length counts after decoding: 1024 'a' sent as %61 is still 1024 bytes.
  t.equal(keyFromUrl('/kv/' + '%61'.repeat(1024)), 'a'.repeat(1024), 'length is measured after decoding')
  invalid(t, () => keyFromUrl('/kv/' + '%61'.repeat(1025)), '1025 decoded bytes')
  t.equal(MAX_KEY_BYTES, 1024)
})

t.test('malformed percent-encoding is refused', async (t) => {
  for (const seg of ['%', '%2', '%zz', '%G0', 'a%', '%E0%A4%A', '%FF', '%C0%AF', '%ED%A0%80', '%80', 'ok%E2%82']) {
    invalid(t, () => keyFromUrl('/kv/' + seg), `/kv/${seg}`)
  }
})

t.test('lone surrogates are refused', async (t) => {
  invalid(t, () => validateKey('\uD800'), 'lone high surrogate')
  invalid(t, () => validateKey('a\uDC00b'), 'lone low surrogate')
})
