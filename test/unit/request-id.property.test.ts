import t from 'tap'
import fc from 'fast-check'
import { BATCH_ID_ROOM, batchOpRequestId, newRequestId, parseRequestId, requireRequestId, REQUEST_ID_PATTERN } from '../../src/protocol/request-id'
import { anyString, codedOrValue, holds, stringOf } from './properties'

/** Request ids (src/protocol/request-id.ts): the header, a batch's id and an op's rid. */

const near = stringOf('0az.AZ_-9-.', 90)
const issued = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })

t.test('arbitrary input: an id, undefined, or invalid_header', async (t) => {
  holds(t, 'parseRequestId never throws', [fc.oneof(anyString, near)], (s) => { parseRequestId(s) })
  holds(t, 'requireRequestId throws only invalid_header', [fc.oneof(anyString, near, fc.anything()), fc.integer({ min: 0, max: BATCH_ID_ROOM })], (s, room) => {
    codedOrValue(() => requireRequestId(s, room), ['invalid_header'])
  })
})

t.test('accepted ids satisfy the grammar', async (t) => {
  holds(t, 'parsed ids match the pattern and carry a safe issue time', [fc.oneof(anyString, near)], (s) => {
    const id = parseRequestId(s)
    if (id === undefined) return
    return id.id === s && REQUEST_ID_PATTERN.test(s) && Number.isSafeInteger(id.issued) && id.issued === parseInt(s.split('.')[0] ?? '', 36)
  })
  holds(t, 'an id required with room leaves that room after the dot', [near, fc.integer({ min: 0, max: BATCH_ID_ROOM })], (s, room) => {
    const id = codedOrValue(() => requireRequestId(s, room), ['invalid_header'])
    return id === undefined || s.length - s.indexOf('.') - 1 + room <= 72
  })
})

t.test('round trips', async (t) => {
  holds(t, 'newRequestId parses back with its issue time', [issued], (now) => {
    const id = newRequestId(now)
    const parsed = parseRequestId(id)
    return parsed !== undefined && parsed.id === id && parsed.issued === now
  })
  holds(t, 'a batch id with room keeps the grammar for every op index', [issued, fc.integer({ min: 0, max: 99_999 })], (now, index) => {
    const batch = requireRequestId(newRequestId(now), BATCH_ID_ROOM)
    const op = parseRequestId(batchOpRequestId(batch.id, index))
    return op !== undefined && op.issued === now
  })
})
