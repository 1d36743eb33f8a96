import t from 'tap'
import { coalescedReadResults, errorFromShard, forwardedToBatchResult, readShardBatchReply, relayShardBatchReply } from '../../router/batch-results'
import type { ForwardResult } from '../../router/forward'
import fc from 'fast-check'
import { codedResult, type BatchResult } from '../../src/protocol/batch'
import { BATCH_LINES_TYPE, resultLine, resultsBody } from '../../src/protocol/batch-lines'

function forwarded (over: Partial<ForwardResult>): ForwardResult {
  return { status: 200, contentType: undefined, contentLength: undefined, etag: undefined, node: undefined, body: Buffer.alloc(0), retries: 0, tombstone: false, ...over }
}

const JSON_TYPE = 'application/json; charset=utf-8'

t.test('readShardBatchReply: a shard 200 in JSON, one result per op, shard-internal fields removed', async (t) => {
  const body = JSON.stringify({
    results: [{ status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' }, { status: 404, error: 'not_found', message: 'm', tombstone: true }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }],
    map: { epoch: 3 }
  })
  const r = readShardBatchReply(200, body, 3, 'http://n')
  t.same(r, { kind: 'ok', results: [{ status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' }, { status: 404, error: 'not_found', message: 'm' }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }] })
  t.match(readShardBatchReply(200, '{"results": []}', 3, 'http://n'), { kind: 'failed', result: { status: 502, error: 'upstream_error' } })
})

t.test('a shard 200 in JSON (a node that does not know the lines form): one result per op, shard-internal fields removed', async (t) => {
  const body = JSON.stringify({
    results: [{ status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' }, { error: 'not_found', message: 'm', tombstone: true, status: 404 }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }],
    map: { epoch: 3 }
  })
  const r = relayShardBatchReply(200, JSON_TYPE, body, 3, 'http://n')
  t.same(r, {
    kind: 'ok',
    results: [
      { status: 200, json: '{"status":200,"etag":"\\"a\\"","value":"aGk=","contentType":"text/plain"}' },
      { status: 404, json: '{"status":404,"error":"not_found","message":"m"}' },
      { status: 421, json: '{"status":421,"error":"misdirected","message":"m","epoch":3}' }
    ]
  })
})

t.test('a shard 200 in the lines form: each result relayed as the node wrote it', async (t) => {
  const results = [
    { status: 200, etag: '"a"', value: 'aGk=', contentType: 'text/plain' },
    { status: 404, error: 'not_found', message: 'line\nbreak', tombstone: true },
    codedResult('misdirected', 'm', { epoch: 3 })
  ]
  const text = results.map(resultLine).join('')
  const r = relayShardBatchReply(200, BATCH_LINES_TYPE, text, 3, 'http://n')
  t.equal(r.kind, 'ok')
  const relayed = r.kind === 'ok' ? r.results : []
  t.same(relayed.map((x) => x.status), [200, 404, 421])
  t.same(JSON.parse(resultsBody(relayed.map((x) => x.json))), {
    results: [results[0], { status: 404, error: 'not_found', message: 'line\nbreak' }, { status: 421, error: 'misdirected', message: 'm', epoch: 3 }]
  }, 'the client sees the results without the tombstone flag')
  t.match(relayed[2]?.json, /^\{"status":421,/, 'status first, also in error results')
})

t.test('a found get\'s line is the JSON of its result object, whatever its strings hold', async (t) => {
  const text = fc.string({ unit: 'binary', maxLength: 20 })
  fc.assert(fc.property(text, text, text, fc.option(text, { nil: undefined }), (etag, contentType, value, ttl) => {
    const r: BatchResult = { status: 200, etag, contentType, value }
    if (ttl !== undefined) r.ttl = ttl
    return resultLine(r) === `200 ${JSON.stringify(r)}\n`
  }), { numRuns: 2000 })
  t.pass('same text as JSON.stringify')
})

t.test('a shard 200 that does not match the ops sent is an upstream error for each op', async (t) => {
  for (const body of ['{"results": []}', 'not json', '{"results": [{"status": "200"}]}', '{"results": [null]}', '[]']) {
    const r = relayShardBatchReply(200, JSON_TYPE, body, 1, 'http://n')
    t.match(r, { kind: 'failed', result: { status: 502, error: 'upstream_error' } }, body)
  }
  const good = '200 {"status":200}\n'
  for (const text of ['', good, good + good + good, '200 {"status":200}', '99 {"status":99}\n', '600 {}\n', '2x0 {}\n', '200{"status":200}\n', '200 []\n', '200 {"status":200}\n\n']) {
    const r = relayShardBatchReply(200, BATCH_LINES_TYPE, text, text === good ? 2 : 1, 'http://n')
    t.match(r, { kind: 'failed', result: { status: 502, error: 'upstream_error' } }, JSON.stringify(text))
  }
})

t.test('whole-request answers', async (t) => {
  t.same(relayShardBatchReply(421, JSON_TYPE, '{"error":"misdirected","message":"not primary"}', 2, 'http://n'), { kind: 'misdirected' }, '421: retry the sub-batch')
  t.same(relayShardBatchReply(503, JSON_TYPE, '{"error":"unavailable","message":"replication timed out","map":{}}', 2, 'http://n'),
    { kind: 'failed', result: { status: 503, error: 'unavailable', message: 'replication timed out' } }, '503 relayed, without the map')
  t.match(relayShardBatchReply(413, JSON_TYPE, '{"error":"batch_too_large","message":"m","maxOps":10}', 2, 'http://n'),
    { kind: 'failed', result: { status: 413, error: 'batch_too_large', maxOps: 10 } }, 'details kept')
  t.match(relayShardBatchReply(500, 'text/html', '<html>', 2, 'http://n'), { kind: 'failed', result: { status: 500, error: 'upstream_error', message: String } }, 'a body that is not JSON')
  t.match(relayShardBatchReply(503, BATCH_LINES_TYPE, '{"error":"unavailable","message":"m"}', 2, 'http://n'),
    { kind: 'failed', result: { status: 503, error: 'unavailable' } }, 'only a 200 is read as lines')
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
