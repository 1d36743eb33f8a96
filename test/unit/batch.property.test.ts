import t from 'tap'
import fc from 'fast-check'
import { parseBatch, toWire, wireJson, type BatchOp } from '../../src/protocol/batch'
import { formatEtag } from '../../src/protocol/preconditions'
import { MAX_KEY_BYTES } from '../../src/protocol/key'
import { newRequestId, parseRequestId } from '../../src/protocol/request-id'
import type { ErrorCode } from '../../src/protocol/errors'
import { anyString, codedOrValue, holds } from './properties'

/** Batch bodies (src/protocol/batch.ts): parsed from any client's JSON, on the router and on nodes. */

const LIMITS = { maxOps: 20, maxValueBytes: 64 }
const CODES: ErrorCode[] = ['invalid_request', 'invalid_key', 'invalid_header', 'value_too_large', 'batch_too_large']

/** Ops that are almost right: every field drawn from valid and invalid values alike. */
const nearOp = fc.record({
  op: fc.constantFrom('get', 'put', 'delete', 'patch', 1, null),
  key: fc.oneof(anyString, fc.constant(''), fc.constant('k'.repeat(MAX_KEY_BYTES + 1)), fc.integer()),
  value: fc.oneof(fc.base64String({ maxLength: 120 }), anyString, fc.constant(null), fc.integer()),
  contentType: fc.oneof(fc.constant('text/plain'), anyString, fc.integer()),
  ifMatch: fc.oneof(fc.constant('*'), fc.constant('"v1"'), anyString, fc.boolean()),
  ifNoneMatch: fc.oneof(fc.constant('*'), anyString),
  rid: fc.oneof(fc.constant(newRequestId()), anyString)
}, { requiredKeys: [] })

const body = fc.oneof(
  fc.jsonValue().map((v) => ({ ops: v })),
  fc.jsonValue(),
  fc.record({ ops: fc.array(fc.oneof(nearOp, fc.jsonValue()), { maxLength: LIMITS.maxOps + 2 }) }),
  fc.anything().map((v) => ({ ops: [v] }))
)

t.test('arbitrary bodies: ops or a coded 4xx, nothing else', async (t) => {
  holds(t, 'parseBatch', [body], (b) => { codedOrValue(() => parseBatch(b, LIMITS), CODES) })
  holds(t, 'parseBatch on bytes a client sent, parsed as JSON', [fc.json()], (text) => { codedOrValue(() => parseBatch(JSON.parse(text), LIMITS), CODES) })
})

t.test('accepted ops satisfy the grammar', async (t) => {
  holds(t, 'ops, keys, values, ids and conditions within bounds', [body], (b) => {
    const ops = codedOrValue(() => parseBatch(b, LIMITS), CODES)
    if (ops === undefined) return
    return ops.length >= 1 && ops.length <= LIMITS.maxOps && ops.every((o) =>
      o.key.length > 0 && Buffer.byteLength(o.key) <= MAX_KEY_BYTES && o.key.isWellFormed() &&
      (o.op === 'put') === (o.value !== undefined) && (o.value === undefined || o.value.length <= LIMITS.maxValueBytes) &&
      (o.rid === undefined || parseRequestId(o.rid) !== undefined) &&
      (o.op !== 'get' || o.ifMatch === undefined))
  })
})

const validKey = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 })
const etags = fc.oneof(fc.constant('*'), fc.array(fc.stringMatching(/^[a-z0-9]{1,8}$/), { minLength: 1, maxLength: 3 }).map((v) => v.map(formatEtag).join(', ')))
const validOp = fc.oneof(
  fc.record({ op: fc.constant('get' as const), key: validKey, ifNoneMatch: fc.option(etags, { nil: undefined }) }),
  fc.record({ op: fc.constant('put' as const), key: validKey, value: fc.uint8Array({ maxLength: LIMITS.maxValueBytes }), contentType: fc.constantFrom('text/plain', 'application/json; charset=utf-8'), ifMatch: fc.option(etags, { nil: undefined }), ifNoneMatch: fc.option(etags, { nil: undefined }) }),
  fc.record({ op: fc.constant('delete' as const), key: validKey, ifMatch: fc.option(etags, { nil: undefined }) })
)

function same (a: BatchOp, b: BatchOp): boolean {
  return a.op === b.op && a.key === b.key && a.contentType === b.contentType && a.ifMatch === b.ifMatch && a.ifNoneMatch === b.ifNoneMatch &&
    a.rid === b.rid && (a.value === undefined ? b.value === undefined : b.value !== undefined && a.value.equals(b.value))
}

t.test('round trip: parse → toWire → JSON → parse is identity (and wireJson writes the same JSON)', async (t) => {
  holds(t, 'valid batches', [fc.array(validOp, { minLength: 1, maxLength: LIMITS.maxOps }), fc.boolean()], (raw, withIds) => {
    const wire = raw.map((o) => ('value' in o ? { ...o, value: Buffer.from(o.value).toString('base64') } : o))
    const first = parseBatch({ ops: wire }, LIMITS)
    const again = parseBatch(JSON.parse(JSON.stringify({ ops: first.map((o, i) => toWire(o, withIds ? `${newRequestId()}-${i}` : undefined)) })), LIMITS)
    const ids = first.map((_, i) => withIds ? `${newRequestId()}-${i}` : undefined)
    const viaText = parseBatch(JSON.parse(`{"ops":[${first.map((o, i) => wireJson(o, ids[i])).join(',')}]}`), LIMITS)
    return again.length === first.length && first.every((o, i) => same({ ...o, rid: again[i]?.rid }, again[i] as BatchOp)) &&
      viaText.every((o, i) => same({ ...(first[i] as BatchOp), rid: o.rid }, o) && o.rid === (ids[i] ?? first[i]?.rid))
  })
})
