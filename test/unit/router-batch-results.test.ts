import t from 'tap'
import { coalescedReadResults, errorFromShard, forwardedToBatchResult, readShardBatchReply } from '../../router/batch-results'
import type { ForwardResult } from '../../router/forward'

function forwarded (over: Partial<ForwardResult>): ForwardResult {
  return { status: 200, contentType: undefined, contentLength: undefined, etag: undefined, node: undefined, body: Buffer.alloc(0), retries: 0, tombstone: false, ...over }
}

t.test('a shard 200: one result per op, shard-internal fields removed', async (t) => {
  const body = JSON.stringify({
    results: [{ status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' }, { status: 404, error: 'not_found', message: 'm', tombstone: true }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }],
    map: { epoch: 3 }
  })
  const r = readShardBatchReply(200, body, 3, 'http://n')
  t.same(r, { kind: 'ok', results: [{ status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' }, { status: 404, error: 'not_found', message: 'm' }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }] })
})

t.test('a shard 200 that does not match the ops sent is an upstream error for each op', async (t) => {
  for (const body of ['{"results": []}', 'not json', '{"results": [{"status": "200"}]}', '{"results": [null]}', '[]']) {
    const r = readShardBatchReply(200, body, 1, 'http://n')
    t.match(r, { kind: 'failed', result: { status: 502, error: 'upstream_error' } }, body)
  }
})

t.test('whole-request answers', async (t) => {
  t.same(readShardBatchReply(421, '{"error":"misdirected","message":"not primary"}', 2, 'http://n'), { kind: 'misdirected' }, '421: retry the sub-batch')
  t.same(readShardBatchReply(503, '{"error":"unavailable","message":"replication timed out","map":{}}', 2, 'http://n'),
    { kind: 'failed', result: { status: 503, error: 'unavailable', message: 'replication timed out' } }, '503 relayed, without the map')
  t.match(readShardBatchReply(413, '{"error":"batch_too_large","message":"m","maxOps":10}', 2, 'http://n'),
    { kind: 'failed', result: { status: 413, error: 'batch_too_large', maxOps: 10 } }, 'details kept')
  t.match(readShardBatchReply(500, '<html>', 2, 'http://n'), { kind: 'failed', result: { status: 500, error: 'upstream_error', message: String } }, 'a body that is not JSON')
  t.match(errorFromShard(404, { error: 'made_up', message: 'x' }), { status: 404, error: 'invalid_request' }, 'an unknown code is not passed on')
})

t.test('single-key answers as batch results', async (t) => {
  t.same(forwardedToBatchResult('get', forwarded({ status: 200, etag: '"e"', contentType: 'image/png', body: Buffer.from([0, 255]) })),
    { status: 200, etag: '"e"', contentType: 'image/png', value: Buffer.from([0, 255]).toString('base64') })
  t.same(forwardedToBatchResult('put', forwarded({ status: 201, etag: '"e"', contentType: 'application/json', body: Buffer.from('{}') })), { status: 201, etag: '"e"' }, 'no body for a put')
  t.same(forwardedToBatchResult('delete', forwarded({ status: 204 })), { status: 204 })
  t.same(forwardedToBatchResult('get', forwarded({ status: 404, tombstone: true, body: Buffer.from('{"error":"not_found","message":"none"}') })),
    { status: 404, error: 'not_found', message: 'none' }, 'no tombstone flag')
  t.same(forwardedToBatchResult('put', forwarded({ status: 412, body: Buffer.from('{"error":"precondition_failed","message":"m","current":"\\"c\\""}') })),
    { status: 412, error: 'precondition_failed', message: 'm', current: '"c"' }, 'the current etag travels')
})

t.test('coalescedReadResults: values and absences become single-GET answers; anything else goes alone', async (t) => {
  const body = (v: unknown): Buffer => Buffer.from(JSON.stringify(v))
  const reply = body({
    results: [
      { status: 200, etag: '"n1.1.7"', contentType: 'text/plain', value: Buffer.from('héllo').toString('base64') },
      { status: 404, error: 'not_found', message: 'no value is stored under this key' },
      { status: 404, error: 'not_found', message: 'no value is stored under this key', tombstone: true },
      { status: 421, error: 'misdirected', message: 'not here', epoch: 3 },
      { status: 413, error: 'batch_too_large', message: 'read this key alone' },
      { status: 200, etag: '"x"', value: 'AAAA' },
      'not an object'
    ]
  })
  const out = coalescedReadResults(200, reply, 7, 'n1')
  t.same(out[0], { status: 200, contentType: 'text/plain', contentLength: '6', etag: '"n1.1.7"', node: 'n1', body: Buffer.from('héllo'), retries: 0, tombstone: false }, 'a value, with its length in bytes')
  const notFound = '{"error":"not_found","message":"no value is stored under this key"}'
  t.same(out[1], { status: 404, contentType: 'application/json; charset=utf-8', contentLength: String(notFound.length), etag: undefined, node: 'n1', body: Buffer.from(notFound), retries: 0, tombstone: false }, 'an absence, with the shard\'s JSON error body')
  t.equal(out[2]?.tombstone, true, 'a deleted key keeps its tombstone signal')
  t.same(out.slice(3), [undefined, undefined, undefined, undefined], 'misdirected, over the limit, malformed: each goes through the single-key path')

  t.same(coalescedReadResults(421, body({ error: 'misdirected' }), 2, 'n1'), [undefined, undefined], 'a refused batch sends every read alone')
  t.same(coalescedReadResults(200, Buffer.from('{not json'), 2, 'n1'), [undefined, undefined], 'an unreadable answer sends every read alone')
  t.same(coalescedReadResults(200, body({ results: [] }), 2, 'n1'), [undefined, undefined], 'an answer of the wrong length sends every read alone')
  t.equal(coalescedReadResults(200, reply, 7, ['a', 'b'])[0]?.node, undefined, 'a repeated node header is not relayed')
})
