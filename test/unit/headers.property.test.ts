import t from 'tap'
import fc from 'fast-check'
import { formatEtag, parseEtagList } from '../../src/protocol/preconditions'
import { storedContentType, MAX_CONTENT_TYPE_LENGTH } from '../../src/protocol/content-type'
import { anyString, codedOrValue, holds, stringOf } from './properties'

/**
 * Header parsers (If-Match / If-None-Match in src/protocol/preconditions.ts, the stored
 * Content-Type in src/protocol/content-type.ts). Node hands header values over as latin1
 * strings, so arbitrary strings cover every byte sequence a client can send.
 */

const ETAG_CHAR = /^[\x21\x23-\x7e\x80-\xff]*$/
/** An opaque-tag: what may stand between the quotes. */
const opaque = fc.string({ unit: fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })).filter((c) => c !== 0x22).map((c) => String.fromCharCode(c)), maxLength: 24 })
const tag = fc.record({ weak: fc.boolean(), opaque })
const header = fc.oneof(anyString, stringOf('"W/*, \t\x7fa\x22\xff'), fc.array(anyString, { maxLength: 3 }))

t.test('If-Match / If-None-Match: a tag set or invalid_header, nothing else', async (t) => {
  holds(t, 'arbitrary values', [header], (h) => { codedOrValue(() => parseEtagList(h, 'If-Match'), ['invalid_header']) })
})

t.test('accepted tag lists satisfy the grammar', async (t) => {
  holds(t, '* or non-empty tags of etagc, weak ones prefixed W/', [header], (h) => {
    const set = codedOrValue(() => parseEtagList(h, 'If-None-Match'), ['invalid_header'])
    if (set === undefined || set === '*') return
    return set.length > 0 && set.every((s) => ETAG_CHAR.test(s.startsWith('W/') ? s.slice(2) : s))
  })
})

t.test('round trip: a formatted list parses back to its tags', async (t) => {
  holds(t, 'tags joined by commas and optional whitespace', [fc.array(tag, { minLength: 1, maxLength: 8 }), fc.constantFrom(',', ', ', ' , ', ',\t')], (tags, sep) => {
    const text = tags.map((x) => (x.weak ? 'W/' : '') + formatEtag(x.opaque)).join(sep)
    const parsed = parseEtagList(text, 'If-Match')
    return Array.isArray(parsed) && parsed.length === tags.length && tags.every((x, i) => parsed[i] === (x.weak ? `W/${x.opaque}` : x.opaque))
  })
  holds(t, 'split across header lines', [fc.array(opaque, { minLength: 1, maxLength: 4 })], (tags) => {
    const parsed = parseEtagList(tags.map(formatEtag), 'If-Match')
    return Array.isArray(parsed) && parsed.join('\n') === tags.join('\n')
  })
})

t.test('Content-Type: stored as sent, the default, or invalid_header', async (t) => {
  const value = fc.oneof(anyString, stringOf(' ;=/a\x7f\t\x00é'), fc.string({ unit: 'binary-ascii', minLength: 250, maxLength: 300 }))
  holds(t, 'accepted values are 1..256 printable ASCII, not starting with a space, unchanged', [value], (v) => {
    const stored = codedOrValue(() => storedContentType(v), ['invalid_header'])
    if (stored === undefined) return
    return stored === v && v.length >= 1 && v.length <= MAX_CONTENT_TYPE_LENGTH && /^[\x21-\x7e][\x20-\x7e]*$/.test(v)
  })
  holds(t, 'every printable value within the limit is accepted', [fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: MAX_CONTENT_TYPE_LENGTH }).filter((v) => v[0] !== ' ')], (v) => storedContentType(v) === v)
})
