import t from 'tap'
import {
  BATCH_ID_ROOM, batchOpRequestId, fingerprintOf, newRequestId, parseRequestId, requireRequestId, REQUEST_ID_PATTERN
} from '../../src/protocol/request-id'

t.test('new ids: the issue time and 128 random bits, header-safe, unique', async (t) => {
  const seen = new Set<string>()
  const now = Date.now()
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId(now)
    if (!REQUEST_ID_PATTERN.test(id)) t.fail(`bad id ${id}`)
    seen.add(id)
  }
  t.equal(seen.size, 10_000, 'no repeats')
  const id = newRequestId(now)
  t.same(parseRequestId(id), { id, issued: now }, 'the issue time reads back')
  t.equal(id.split('.')[1]?.length, 22, '16 random bytes, base64url')
  const a = newRequestId(now).split('.')[1] as string
  const b = newRequestId(now).split('.')[1] as string
  t.not(a.slice(0, 8), b.slice(0, 8), 'no shared prefix: one id tells nothing of the next')
})

t.test('one grammar, enforced alike', async (t) => {
  for (const bad of ['', 'abc', 'x_.12345678', '1.short', '1.' + 'a'.repeat(73), 'ABC.12345678', '1.1234567!', '1.12345678\n', 'zzzzzzzzzzzz.12345678', '1..12345678']) {
    t.equal(parseRequestId(bad), undefined, `refused: ${JSON.stringify(bad)}`)
    t.throws(() => requireRequestId(bad), { code: 'invalid_header', status: 400 })
  }
  t.throws(() => requireRequestId(['1.12345678']), { code: 'invalid_header' }, 'a repeated header is refused')
  t.ok(parseRequestId('0.12345678'), 'the shortest id')
  const long = '1.' + 'a'.repeat(72)
  t.ok(requireRequestId(long), 'a 72-character nonce is a request id')
  t.throws(() => requireRequestId(long, BATCH_ID_ROOM), { code: 'invalid_header' }, 'but leaves no room for a batch op index')
  const batch = requireRequestId('1.' + 'a'.repeat(72 - BATCH_ID_ROOM), BATCH_ID_ROOM)
  t.ok(parseRequestId(batchOpRequestId(batch.id, 9999)), 'a batch id that leaves room makes valid op ids')
  t.equal(parseRequestId(batchOpRequestId(batch.id, 3))?.issued, batch.issued, 'op ids keep the batch\'s issue time')
})

t.test('fingerprints bind an id to one operation', async (t) => {
  const put = { op: 'put' as const, key: 'k', value: Buffer.from('v'), contentType: 'text/plain', conditions: {} }
  const base = fingerprintOf(put)
  t.equal(fingerprintOf({ ...put, value: Buffer.from('v') }), base, 'the same operation, the same fingerprint')
  t.equal(fingerprintOf({ ...put, conditions: { ifMatch: undefined } }), base, 'an absent condition is no condition')
  const others = [
    { ...put, value: Buffer.from('w') },
    { ...put, key: 'k2' },
    { ...put, contentType: 'text/html' },
    { ...put, conditions: { ifMatch: ['"a"'] } },
    { ...put, conditions: { ifMatch: '*' as const } },
    { ...put, conditions: { ifNoneMatch: '*' as const } },
    { op: 'delete' as const, key: 'k' },
    // Field boundaries are unambiguous: a key ending in a newline is not a shifted content type.
    { ...put, key: 'k\ntext/plain', contentType: '' },
    // The principal: one id reused by two clients is refused even for the same operation.
    { ...put, principal: 'app1' },
    { ...put, principal: 'app2' },
    { ...put, principal: 'app1', key: 'k\n' }
  ]
  const prints = new Set([base, ...others.map(fingerprintOf)])
  t.equal(prints.size, others.length + 1, 'any difference gives another fingerprint')
  t.equal(fingerprintOf({ ...put, principal: '' }), base, 'no principal (auth off): the fingerprint records stored before principals had')
  t.equal(base, 'Mk5oZ_JrWEHKcedFAian8E', 'unchanged from before principals existed')
})
