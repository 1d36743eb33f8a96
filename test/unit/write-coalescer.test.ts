import t from 'tap'
import { coalescedWriteResults, coalescibleWrite, writeOp } from '../../router/write-coalescer'
import { COALESCED_VALUE_BYTES } from '../../src/protocol/limits'
import type { ForwardRequest } from '../../router/forward'

/**
 * The pure parts of write coalescing (router/write-coalescer.ts): which writes may share
 * an upstream batch, how each travels (its request id as the op's rid), and which batch
 * results stand for the single write's answer (only successes; the rest go alone).
 */

const RID = 'mfx2k3.abcdefgh12'

function put (extra: Partial<ForwardRequest> = {}): ForwardRequest {
  return { method: 'PUT', key: 'k', requestId: RID, body: Buffer.from('v'), contentType: 'text/plain', ifMatch: undefined, ifNoneMatch: undefined, ...extra }
}

t.test('only unconditional PUTs and DELETEs of bounded values, without a TTL or a prior timeout, are coalesced', async (t) => {
  const cases: Array<[string, ForwardRequest, boolean]> = [
    ['plain PUT', put(), true],
    ['plain DELETE', put({ method: 'DELETE', body: null, contentType: undefined }), true],
    ['GET', put({ method: 'GET', body: null }), false],
    ['HEAD', put({ method: 'HEAD', body: null }), false],
    ['If-Match', put({ ifMatch: '"x"' }), false],
    ['If-None-Match', put({ ifNoneMatch: '*' }), false],
    ['conditional DELETE', put({ method: 'DELETE', body: null, ifMatch: '"x"' }), false],
    ['TTL', put({ ttl: '30' }), false],
    ['a prior timeout', put({ priorTimeouts: 1 }), false],
    ['value at the bound', put({ body: Buffer.alloc(COALESCED_VALUE_BYTES) }), true],
    ['value past the bound', put({ body: Buffer.alloc(COALESCED_VALUE_BYTES + 1) }), false]
  ]
  for (const [name, req, want] of cases) t.equal(coalescibleWrite(req), want, name)
})

t.test('each write travels with its request id as rid', async (t) => {
  t.same(writeOp(put()), { op: 'put', key: 'k', value: Buffer.from('v').toString('base64'), rid: RID, contentType: 'text/plain' })
  t.same(writeOp(put({ method: 'DELETE', body: null, contentType: undefined })), { op: 'delete', key: 'k', rid: RID })
  t.same(writeOp(put({ body: Buffer.alloc(0) })), { op: 'put', key: 'k', value: '', rid: RID, contentType: 'text/plain' })
})

t.test('successful results become the single-key answer; anything else goes alone', async (t) => {
  const body = JSON.stringify({
    results: [
      { status: 201, etag: '"n1.1.a"' },
      { status: 200, etag: '"n1.1.b"' },
      { status: 204 },
      { status: 412, error: 'precondition_failed', message: 'no' },
      { status: 421, error: 'misdirected', message: 'elsewhere' },
      { status: 500, error: 'internal', message: 'boom' },
      { status: 201 },
      { status: 200, etag: '"n1.1.c"' }
    ]
  })
  const got = coalescedWriteResults(200, body, ['PUT', 'PUT', 'DELETE', 'PUT', 'PUT', 'PUT', 'PUT', 'DELETE'], 'n1', 'http://127.0.0.1:1')
  t.equal(got.length, 8)
  t.same(got[0], { status: 201, contentType: 'application/json; charset=utf-8', contentLength: '20', etag: '"n1.1.a"', node: 'n1', body: Buffer.from('{"version":"n1.1.a"}'), retries: 0, tombstone: false }, 'created: 201, the ETag and {"version"} as the node answers a PUT')
  t.equal(got[1]?.status, 200, 'replaced: 200')
  t.same({ status: got[2]?.status, body: got[2]?.body.length, type: got[2]?.contentType }, { status: 204, body: 0, type: undefined }, 'a DELETE: 204, no body')
  t.same(got.slice(3), [undefined, undefined, undefined, undefined, undefined], 'errors, a PUT result without an ETag and a DELETE answered 200 go alone')
  t.same(coalescedWriteResults(421, '{}', ['PUT', 'PUT'], 'n1', 'u'), [], 'a misdirected batch: all alone')
  t.same(coalescedWriteResults(503, '{"error":"unavailable"}', ['PUT'], 'n1', 'u'), [], 'a failed batch: all alone')
  t.same(coalescedWriteResults(200, '{"results":[{"status":201,"etag":"\\"a\\""}]}', ['PUT', 'PUT'], 'n1', 'u'), [], 'a result count that does not match: all alone')
  t.same(coalescedWriteResults(200, 'not json', ['PUT'], 'n1', 'u'), [], 'a malformed body: all alone')
})
