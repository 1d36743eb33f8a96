import t, { type Test } from 'tap'
import { parseBatch, toWire, wireJson, errorResult, type BatchLimits } from '../../src/protocol/batch'
import { ShardKvError, ERROR_STATUS, type ErrorCode } from '../../src/protocol/errors'
import { planBatch } from '../../src/membership/batch-plan'
import { RoutingTable } from '../../src/membership/routing-table'
import { initialMap, type ClusterMap } from '../../src/membership/map'
import { GroupRing } from '../../src/ring/ring'

const LIMITS: BatchLimits = { maxOps: 5, maxValueBytes: 8 }
const RING = { vnodesPerWeight: 256, algorithm: 'md5' as const }

function refused (t: Test, body: unknown, code: ErrorCode, what: string): void {
  try {
    parseBatch(body, LIMITS)
    t.fail(`${what}: expected ${code}`)
  } catch (err) {
    t.ok(err instanceof ShardKvError, `${what}: a ShardKvError`)
    t.equal((err as ShardKvError).code, code, `${what}: ${code}`)
    t.equal((err as ShardKvError).status, ERROR_STATUS[code], `${what}: status ${ERROR_STATUS[code]}`)
  }
}

t.test('parseBatch accepts the three ops and decodes values', async (t) => {
  const ops = parseBatch({
    ops: [
      { op: 'get', key: 'a' },
      { op: 'put', key: 'b/c d', value: Buffer.from([0, 255, 10]).toString('base64'), contentType: 'image/png', ifNoneMatch: '*' },
      { op: 'delete', key: 'ключ', ifMatch: '"n.1.2"' },
      { op: 'put', key: 'e', value: '' }
    ]
  }, LIMITS)
  t.equal(ops.length, 4)
  t.same(ops[0], { op: 'get', key: 'a', value: undefined, contentType: undefined, ifMatch: undefined, ifNoneMatch: undefined, conditions: {}, rid: undefined })
  t.same([...(ops[1]?.value ?? [])], [0, 255, 10], 'binary value decoded byte for byte')
  t.equal(ops[1]?.contentType, 'image/png')
  t.equal(ops[1]?.conditions.ifNoneMatch, '*')
  t.same(ops[2]?.conditions.ifMatch, ['n.1.2'])
  t.equal(ops[3]?.value?.length, 0, 'an empty value is a value')
  t.equal(ops[3]?.contentType, 'application/octet-stream', 'default content type')
})

t.test('parseBatch refuses malformed batches as a whole', async (t) => {
  refused(t, null, 'invalid_request', 'null body')
  refused(t, { ops: 'x' }, 'invalid_request', 'ops not an array')
  refused(t, { ops: [] }, 'invalid_request', 'no ops')
  refused(t, { ops: Array.from({ length: 6 }, () => ({ op: 'get', key: 'a' })) }, 'batch_too_large', 'too many ops')
  refused(t, { ops: [{ op: 'patch', key: 'a' }] }, 'invalid_request', 'unknown op')
  refused(t, { ops: [{ op: 'get' }] }, 'invalid_request', 'no key')
  refused(t, { ops: [{ op: 'get', key: '' }] }, 'invalid_key', 'empty key')
  refused(t, { ops: [{ op: 'get', key: 'x'.repeat(1025) }] }, 'invalid_key', 'key over 1024 bytes')
  refused(t, { ops: [{ op: 'get', key: '\ud800' }] }, 'invalid_key', 'lone surrogate')
  refused(t, { ops: [{ op: 'put', key: 'a' }] }, 'invalid_request', 'put without value')
  refused(t, { ops: [{ op: 'put', key: 'a', value: 'not base64!' }] }, 'invalid_request', 'value not base64')
  refused(t, { ops: [{ op: 'put', key: 'a', value: Buffer.alloc(9).toString('base64') }] }, 'value_too_large', 'value over the limit')
  refused(t, { ops: [{ op: 'put', key: 'a', value: '', ifMatch: 'nope' }] }, 'invalid_header', 'bad ifMatch')
  refused(t, { ops: [{ op: 'get', key: 'a', ifMatch: '"x"' }] }, 'invalid_request', 'get with ifMatch')
  refused(t, { ops: [{ op: 'delete', key: 'a', value: '' }] }, 'invalid_request', 'delete with a value')
  refused(t, { ops: [{ op: 'get', key: 'a', rid: 'has space' }] }, 'invalid_request', 'bad rid')
  refused(t, { ops: [{ op: 'put', key: 'a', value: '', contentType: 'a\nb' }] }, 'invalid_request', 'content type with a newline')
  // Exactly at the limit is fine.
  t.equal(parseBatch({ ops: [{ op: 'put', key: 'a', value: Buffer.alloc(8).toString('base64') }] }, LIMITS)[0]?.value?.length, 8)
})

t.test('toWire round-trips through parseBatch, with the request id', async (t) => {
  const ops = parseBatch({ ops: [{ op: 'put', key: 'k', value: 'AAE=', contentType: 'text/plain', ifMatch: '"v"' }, { op: 'get', key: 'g' }] }, LIMITS)
  const wire = ops.map((op, i) => toWire(op, `kf0.batch0001-${i}`))
  t.same(wire[0], { op: 'put', key: 'k', value: 'AAE=', contentType: 'text/plain', ifMatch: '"v"', rid: 'kf0.batch0001-0' })
  t.same(wire[1], { op: 'get', key: 'g', rid: 'kf0.batch0001-1' })
  t.same(parseBatch({ ops: wire }, LIMITS).map((o) => o.rid), ['kf0.batch0001-0', 'kf0.batch0001-1'])
  refused(t, { ops: [{ op: 'put', key: 'k', value: 'AAE=', rid: 'rid-0' }] }, 'invalid_request', 'a rid without its issue time')
})

t.test('wireJson is toWire as JSON, a plain get included', async (t) => {
  const ops = parseBatch({ ops: [{ op: 'get', key: 'k"\\\u2028é' }, { op: 'get', key: 'g', rid: 'kf0.batch0001-5' }, { op: 'delete', key: 'd' }] }, LIMITS)
  for (const rid of [undefined, 'kf0.batch0002-1']) {
    t.same(ops.map((op) => JSON.parse(wireJson(op, rid))), ops.map((op) => toWire(op, rid)), `rid ${String(rid)}`)
  }
  t.equal(wireJson(ops[0]!, undefined), '{"op":"get","key":"k\\"\\\\\u2028é"}')
})

t.test('errorResult carries the code, status and details', async (t) => {
  t.same(errorResult(new ShardKvError('precondition_failed', 'no', { current: '"v"' })), { current: '"v"', status: 412, error: 'precondition_failed', message: 'no' })
})

function tableOf (map: ClusterMap): RoutingTable {
  return new RoutingTable(map)
}

t.test('planBatch groups keys by owner primary and sends moving keys one by one', async (t) => {
  const specs = [1, 2, 3].map((i) => ({ id: `g${i}`, url: `http://127.0.0.1:700${i}`, weight: 1 }))
  const settled = initialMap(specs, RING)
  const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`)
  const plan = planBatch(tableOf(settled), keys)
  t.equal(plan.single.length, 0, 'nothing moves in a settled map')
  t.equal(plan.unowned.length, 0)
  const ring = new GroupRing(specs, RING)
  let total = 0
  for (const [url, idx] of plan.byPrimary) {
    total += idx.length
    t.same(idx, [...idx].sort((a, b) => a - b), `${url}: batch order kept`)
    const wrong = idx.filter((i) => `http://127.0.0.1:700${(ring.ownerOf(keys[i] as string) ?? '').slice(1)}` !== url)
    t.same(wrong, [], `${url}: only keys its group owns`)
  }
  t.equal(total, keys.length, 'every op planned once')

  // An unsettled add of g4: keys whose owner changes go single, the rest stay grouped.
  const g4 = { id: 'g4', weight: 1, state: 'active' as const, nodes: [{ url: 'http://127.0.0.1:7004', role: 'primary' as const }] }
  const moving: ClusterMap = { ...settled, epoch: settled.epoch + 1, groups: [...settled.groups, g4], handover: { previous: specs.map((s) => ({ id: s.id, weight: 1 })) } }
  const after = new GroupRing([...specs, { id: 'g4', weight: 1 }], RING)
  const p2 = planBatch(tableOf(moving), keys)
  const expectedSingle = keys.map((k, i) => ring.ownerOf(k) !== after.ownerOf(k) ? i : -1).filter((i) => i >= 0)
  t.same(p2.single, expectedSingle, 'exactly the moving keys go one by one')
  t.ok(expectedSingle.length > 30 && expectedSingle.length < 120, `about a quarter move (${expectedSingle.length})`)
  t.notOk(p2.byPrimary.has('http://127.0.0.1:7004'), 'the new group gets no grouped ops while unsettled')

  // A subset of indexes (a re-plan after 421s) plans only those.
  const p3 = planBatch(tableOf(settled), keys, [5, 7])
  t.same([...p3.byPrimary.values()].flat().sort((a, b) => a - b), [5, 7])

  const empty = planBatch(tableOf({ ...settled, groups: [] }), ['a'])
  t.same(empty.unowned, [0], 'no group on the ring: unowned')
})
