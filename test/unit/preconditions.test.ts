import t from 'tap'
import { parseEtagList, formatEtag, writeAllowed, notModified, hasConditions, type WriteConditions } from '../../src/protocol/preconditions'
import { ShardKvError } from '../../src/protocol/errors'

t.test('parseEtagList accepts * and lists of quoted tags', async (t) => {
  t.equal(parseEtagList(undefined, 'If-Match'), undefined)
  t.equal(parseEtagList('*', 'If-Match'), '*')
  t.equal(parseEtagList('  *  ', 'If-Match'), '*')
  t.same(parseEtagList('"a"', 'If-Match'), ['a'])
  t.same(parseEtagList('"n1.1.a"', 'If-Match'), ['n1.1.a'])
  t.same(parseEtagList('"a", "b",  "c"', 'If-Match'), ['a', 'b', 'c'])
  t.same(parseEtagList('"a","b"', 'If-Match'), ['a', 'b'])
  t.same(parseEtagList('W/"a"', 'If-None-Match'), ['W/a'], 'weak tags keep their prefix')
  t.same(parseEtagList('W/"a", "b"', 'If-None-Match'), ['W/a', 'b'])
  t.same(parseEtagList('""', 'If-Match'), [''], 'an empty tag is well-formed')
  t.same(parseEtagList(['"a"', '"b"'], 'If-Match'), ['a', 'b'], 'repeated headers are joined')
})

t.test('parseEtagList refuses malformed headers with invalid_header', async (t) => {
  const bad = ['', '   ', 'a', '"a', 'a"', '"a" "b"', '"a"b', '"a b"', '*, "a"', '"a", *', 'W/a', 'w/"a"', '"a\\"b"', '**', '"a";"b"']
  for (const h of bad) {
    try {
      const got = parseEtagList(h, 'If-Match')
      t.fail(`${JSON.stringify(h)}: expected invalid_header, got ${JSON.stringify(got)}`)
    } catch (err) {
      t.ok(err instanceof ShardKvError && err.code === 'invalid_header' && err.status === 400, `${JSON.stringify(h)} -> invalid_header`)
      t.match((err as Error).message, /If-Match/, 'message names the header')
    }
  }
})

t.test('formatEtag quotes a version', async (t) => {
  t.equal(formatEtag('n1.1.a'), '"n1.1.a"')
  t.same(parseEtagList(formatEtag('n1.1.a'), 'If-Match'), ['n1.1.a'], 'round-trips')
})

t.test('writeAllowed truth table', async (t) => {
  const rows: Array<[string, WriteConditions, string | undefined, boolean]> = [
    ['no conditions, absent', {}, undefined, true],
    ['no conditions, present', {}, 'v1', true],
    ['If-Match *, absent', { ifMatch: '*' }, undefined, false],
    ['If-Match *, present', { ifMatch: '*' }, 'v1', true],
    ['If-Match v1, current v1', { ifMatch: ['v1'] }, 'v1', true],
    ['If-Match v1, current v2', { ifMatch: ['v1'] }, 'v2', false],
    ['If-Match v1, absent', { ifMatch: ['v1'] }, undefined, false],
    ['If-Match v0,v1, current v1', { ifMatch: ['v0', 'v1'] }, 'v1', true],
    ['If-Match W/v1 (weak), current v1: strong comparison', { ifMatch: ['W/v1'] }, 'v1', false],
    ['If-None-Match *, absent', { ifNoneMatch: '*' }, undefined, true],
    ['If-None-Match *, present', { ifNoneMatch: '*' }, 'v1', false],
    ['If-None-Match v1, current v1', { ifNoneMatch: ['v1'] }, 'v1', false],
    ['If-None-Match v1, current v2', { ifNoneMatch: ['v1'] }, 'v2', true],
    ['If-None-Match v1, absent', { ifNoneMatch: ['v1'] }, undefined, true],
    ['If-Match v1 + If-None-Match v1, current v1', { ifMatch: ['v1'], ifNoneMatch: ['v1'] }, 'v1', false],
    ['If-Match * + If-None-Match v2, current v1', { ifMatch: '*', ifNoneMatch: ['v2'] }, 'v1', true],
    ['If-Match * + If-None-Match *, present', { ifMatch: '*', ifNoneMatch: '*' }, 'v1', false],
    ['If-Match * + If-None-Match *, absent', { ifMatch: '*', ifNoneMatch: '*' }, undefined, false]
  ]
  for (const [name, cond, current, want] of rows) t.equal(writeAllowed(cond, current), want, name)
})

t.test('notModified (GET If-None-Match, weak comparison)', async (t) => {
  t.equal(notModified(undefined, 'v1'), false, 'no header')
  t.equal(notModified('*', 'v1'), true, '*')
  t.equal(notModified(['v1'], 'v1'), true, 'same tag')
  t.equal(notModified(['W/v1'], 'v1'), true, 'weak tag matches')
  t.equal(notModified(['v0', 'v1'], 'v1'), true, 'one of a list')
  t.equal(notModified(['v2'], 'v1'), false, 'other tag')
  t.equal(notModified([], 'v1'), false, 'empty list')
})

t.test('hasConditions', async (t) => {
  t.equal(hasConditions({}), false)
  t.equal(hasConditions({ ifMatch: '*' }), true)
  t.equal(hasConditions({ ifNoneMatch: ['a'] }), true)
})
