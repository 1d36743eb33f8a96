import t from 'tap'
import { chunkOps, coalescedGetResults, coalescedWriteResults, fromBatchResult, fromHttp, toDeleteResult, toEntry, toPutResult, unavailableResult } from '../../src/client/results'
import { batchResults } from '../../src/client/routed'
import { KvError, NotFoundError, PreconditionFailedError, UnavailableError, ValueTooLargeError } from '../../src/client/errors'
import { Backoff, newRequestId } from '../../src/client/transport'
import { classifyUpstreamError as classifyFailure } from '../../src/http/upstream-errors'
import { REQUEST_ID_PATTERN } from '../../src/protocol/request-id'
import type { BatchOpWire } from '../../src/protocol/batch'

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v))

t.test('single-key responses', async (t) => {
  const bytes = Buffer.from([0, 255, 1, 254])
  const got = toEntry(fromHttp(200, { etag: '"a.1.2"', 'content-type': 'image/png' }, bytes))
  t.same(got, { value: bytes, contentType: 'image/png', etag: '"a.1.2"' }, 'a 200 is an entry with the exact bytes')
  t.ok(toEntry(fromHttp(404, {}, json({ error: 'not_found', message: 'no' }))) instanceof NotFoundError, '404 is NotFoundError')
  t.same(toPutResult(fromHttp(201, { etag: '"e"' }, json({ version: 'e' }))), { etag: '"e"', created: true }, '201 created')
  t.same(toPutResult(fromHttp(200, { etag: '"f"' }, Buffer.alloc(0))), { etag: '"f"', created: false }, '200 replaced')
  const pf = toPutResult(fromHttp(412, {}, json({ error: 'precondition_failed', message: 'm', current: '"x"' })))
  t.ok(pf instanceof PreconditionFailedError && pf.current === '"x"', '412 carries current')
  t.equal(toDeleteResult(fromHttp(204, {}, Buffer.alloc(0))), undefined, '204 is done')
  t.ok(toDeleteResult(fromHttp(503, {}, Buffer.from('<html>'))) instanceof UnavailableError, 'a 503 with a non-JSON body is still typed')
  t.ok(toEntry(fromHttp(204, {}, Buffer.alloc(0))) instanceof KvError, 'an unexpected success status is an error, not a fake entry')
})

t.test('batch results', async (t) => {
  const v = Buffer.from('héllo\u0000')
  t.same(toEntry(fromBatchResult({ status: 200, etag: '"1"', contentType: 'text/plain', value: v.toString('base64') })),
    { value: v, contentType: 'text/plain', etag: '"1"' }, 'a get result decodes base64')
  t.ok(toEntry(fromBatchResult({ status: 404, error: 'not_found', message: 'no', tombstone: true })) instanceof NotFoundError)
  t.same(toPutResult(fromBatchResult({ status: 201, etag: '"2"' })), { etag: '"2"', created: true })
  const e = toPutResult(fromBatchResult({ status: 412, error: 'precondition_failed', message: 'm', current: null }))
  t.ok(e instanceof PreconditionFailedError && e.current === null)
  t.equal(toDeleteResult(fromBatchResult({ status: 204 })), undefined)
  t.ok(toEntry(fromBatchResult(undefined)) instanceof UnavailableError, 'a missing result is an upstream error')
  t.ok(toDeleteResult(unavailableResult('gone')) instanceof UnavailableError)

  const rs = batchResults({ status: 200, body: json({ results: [{ status: 204 }, { status: 404, error: 'not_found', message: 'x' }] }) }, 2)
  t.same(rs.map((r) => r.status), [204, 404], 'results in order')
  t.throws(() => batchResults({ status: 413, body: json({ error: 'batch_too_large', message: 'too many' }) }, 2), ValueTooLargeError, 'a 4xx refuses the whole batch')
  t.throws(() => batchResults({ status: 200, body: json({ results: [{ status: 204 }] }) }, 2), UnavailableError, 'a result count mismatch is an upstream error')
  const down = batchResults({ status: 503, body: json({ error: 'unavailable', message: 'down' }) }, 3)
  t.equal(down.length, 3, 'a 5xx gives every op an error result')
  t.ok(down.every((r) => toEntry(r) instanceof UnavailableError))
})

t.test('chunking by count and bytes keeps order and start indexes', async (t) => {
  const ops: BatchOpWire[] = Array.from({ length: 7 }, (_, i) => ({ op: 'put', key: `k${i}`, value: 'x'.repeat(i === 3 ? 1000 : 10) }))
  const byCount = chunkOps(ops, 3, 1 << 20)
  t.same(byCount.map((c) => [c.start, c.ops.length]), [[0, 3], [3, 3], [6, 1]])
  const byBytes = chunkOps(ops, 100, 600)
  t.same(byBytes.flatMap((c) => c.ops.map((o) => o.key)), ops.map((o) => o.key), 'every op once, in order')
  t.ok(byBytes.some((c) => c.ops.length === 1 && c.ops[0]?.key === 'k3'), 'an op over the byte budget is a chunk of its own')
  t.same(chunkOps([], 10, 100), [])
})

t.test('transport helpers', async (t) => {
  t.equal(classifyFailure(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'retry')
  t.equal(classifyFailure(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })])), 'retry', 'happy-eyeballs errors')
  t.equal(classifyFailure(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })), 'timeout')
  t.equal(classifyFailure(new Error('boom')), 'fatal')
  const b = new Backoff(1000)
  t.same([b.step(0), b.step(0), b.step(0), b.step(0), b.step(0), b.step(0)], [10, 20, 40, 80, 160, 200], 'doubles up to 200 ms')
  t.equal(b.step(900), undefined, 'never past the deadline')
  for (let i = 0; i < 20; i++) t.match(newRequestId(), REQUEST_ID_PATTERN)
})

t.test('coalesced gets: a value or an absence answers as the single GET would; anything else is sent alone', async (t) => {
  const notFound = { error: 'not_found', message: 'no value is stored under this key' }
  const body = Buffer.from(JSON.stringify({
    results: [
      { status: 200, etag: '"e1"', contentType: 'text/plain', value: Buffer.from('hi').toString('base64') },
      { status: 404, ...notFound, tombstone: true },
      { status: 421, error: 'misdirected', message: 'x' },
      { status: 413, error: 'batch_too_large', message: 'read alone' },
      null
    ]
  }))
  const out = coalescedGetResults(200, body, 5)
  const single200 = fromHttp(200, { etag: '"e1"', 'content-type': 'text/plain' }, Buffer.from('hi'))
  t.same(out[0], single200, 'a value equals the single GET\'s result')
  t.same(out[1], fromHttp(404, { 'content-type': 'application/json; charset=utf-8' }, Buffer.from(JSON.stringify(notFound))), 'an absence equals the single GET\'s result (error body, no tombstone field)')
  const err = toEntry(out[1]!)
  t.ok(err instanceof NotFoundError, 'and becomes a NotFoundError')
  t.same(out.slice(2), [undefined, undefined, undefined], 'the rest go alone')
  t.same(coalescedGetResults(421, body, 5), new Array(5).fill(undefined), 'a refused batch: every read alone')
  t.same(coalescedGetResults(200, Buffer.from('nope'), 1), [undefined], 'not JSON: every read alone')
  t.same(coalescedGetResults(200, Buffer.from('{"results":[]}'), 2), [undefined, undefined], 'wrong count: every read alone')
})

t.test('a coalesced batch of writes: only certain successes are taken from it', async (t) => {
  const body = json({
    results: [
      { status: 201, etag: '"g1.1.a"' },
      { status: 200, etag: '"g1.1.b"' },
      { status: 204 },
      { status: 412, error: 'precondition_failed', message: 'x' },
      { status: 421, error: 'misdirected', message: 'moved' },
      { status: 201 },
      { status: 200, etag: 'unquoted' },
      { status: 503, error: 'unavailable', message: 'not replicated' },
      'junk'
    ]
  })
  const methods = ['PUT', 'PUT', 'DELETE', 'PUT', 'PUT', 'PUT', 'PUT', 'DELETE', 'PUT'] as const
  t.same(coalescedWriteResults(200, body, methods), [
    { status: 201, etag: '"g1.1.a"' },
    { status: 200, etag: '"g1.1.b"' },
    { status: 204 },
    undefined, undefined, undefined, undefined, undefined, undefined
  ], 'a PUT\'s 201/200 with a quoted ETag and a DELETE\'s 204; anything else goes alone')
  t.same(toPutResult(coalescedWriteResults(200, body, methods)[0] as never), { etag: '"g1.1.a"', created: true }, 'answers as a lone PUT')
  t.same(coalescedWriteResults(200, json({ results: [{ status: 204 }] }), ['PUT']), [undefined], 'a 204 for a PUT is not a PUT\'s answer')
  t.same(coalescedWriteResults(413, json({ error: 'batch_too_large' }), ['PUT', 'PUT']), [], 'a refused batch: every write alone')
  t.same(coalescedWriteResults(200, json({ results: [{ status: 201, etag: '"a"' }] }), ['PUT', 'PUT']), [], 'a result count that does not match: every write alone')
  t.same(coalescedWriteResults(200, Buffer.from('not json'), ['DELETE']), [], 'an answer that is not JSON: alone')
})
