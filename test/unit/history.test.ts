import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HistoryChecker, LoadGenerator, formatViolation } from '../harness/history'
import { keyFromUrl } from '../../src/protocol/key'

/**
 * The fault tests are only as good as their checker: these tests feed it fabricated
 * histories with known violations, and run the real load generator against a small
 * in-process fake store that is correct, stale, or lossy on purpose.
 */

t.test('a correct history has no violations', async (t) => {
  const h = new HistoryChecker()
  h.track('k')
  h.readResult('k', null)
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  h.readResult('k', 'v1')
  h.writeStarted('k', null)
  h.writeAcked('k', null)
  h.readResult('k', null)
  h.writeStarted('k', 'v2')
  h.writeAcked('k', 'v2')
  h.finalState('k', 'v2')
  const r = h.report()
  t.ok(r.ok, r.text)
  t.same(r.counts, { writesAcked: 2, deletesAcked: 1, writesUnknown: 0, readsChecked: 3, readsFailed: 0, keysVerified: 1 })
})

t.test('a lost write and a stale read are both reported, precisely', async (t) => {
  const h = new HistoryChecker()
  // key a: v1 then v2 acknowledged; a read returns v1 (stale); the final state is v1 (lost write).
  h.writeStarted('a', 'a-v1')
  h.writeAcked('a', 'a-v1')
  h.writeStarted('a', 'a-v2')
  h.writeAcked('a', 'a-v2')
  const stale = h.readResult('a', 'a-v1')
  // key b: acknowledged, then gone at the end (lost write to absent).
  h.writeStarted('b', 'b-v1')
  h.writeAcked('b', 'b-v1')
  h.finalState('a', 'a-v1')
  h.finalState('b', null)
  const r = h.report()
  t.notOk(r.ok, 'the report is not ok')
  t.equal(r.staleReads.length, 1, 'one stale read')
  t.equal(r.lostWrites.length, 2, 'two lost writes')
  t.same(stale, r.staleReads[0], 'readResult returns the violation it records')
  t.match(r.staleReads[0], { type: 'stale-read', key: 'a', expected: 'a-v2', got: 'a-v1' })
  t.match(r.lostWrites[0], { type: 'lost-write', key: 'a', expected: 'a-v2', got: 'a-v1' })
  t.match(r.lostWrites[1], { type: 'lost-write', key: 'b', expected: 'b-v1', got: null })
  t.match(formatViolation(r.staleReads[0]!), /^stale-read key="a" expected="a-v2" got="a-v1"/)
  t.match(formatViolation(r.lostWrites[1]!), /^lost-write key="b" expected="b-v1" got=<absent>/)
  t.match(r.text, /3 violation\(s\)/)
  t.match(r.text, /stale-read key="a"/)
  t.match(r.text, /lost-write key="b"/)
})

t.test('a resurrected delete is a stale read and a lost delete', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  h.writeStarted('k', null)
  h.writeAcked('k', null)
  h.readResult('k', 'v1')
  h.finalState('k', 'v1')
  const r = h.report()
  t.match(r.staleReads[0], { key: 'k', expected: null, got: 'v1' })
  t.match(r.lostWrites[0], { key: 'k', expected: null, got: 'v1' })
})

t.test('reading an older state than the initial absence: absent after a write is stale', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  t.match(h.readResult('k', null), { type: 'stale-read', expected: 'v1', got: null })
})

t.test('a value never written to the key is reported as unknown-value', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  t.match(h.readResult('k', 'other-key-value'), { type: 'unknown-value', key: 'k', got: 'other-key-value' })
  t.match(h.finalState('k', 'garbage'), { type: 'lost-write', detail: /never written/ })
})

t.test('unknown-outcome and in-flight writes are acceptable, nothing older is', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  h.writeStarted('k', 'v2')
  t.equal(h.readResult('k', 'v2'), undefined, 'a read concurrent with a write may see it')
  t.equal(h.readResult('k', 'v1'), undefined, '…or not')
  h.writeUnknown('k', 'v2')
  t.equal(h.readResult('k', 'v2'), undefined, 'an unknown-outcome write may have applied')
  t.equal(h.readResult('k', 'v1'), undefined, '…or not')
  h.writeStarted('k', 'v3')
  h.writeAcked('k', 'v3')
  t.match(h.readResult('k', 'v1'), { type: 'stale-read', expected: 'v3', alsoAcceptable: ['v2'] }, 'v1 is stale once v3 is acknowledged')
  t.equal(h.finalState('k', 'v3'), undefined)
  t.equal(h.counts.writesUnknown, 1)
  const refused = new HistoryChecker()
  refused.writeStarted('k', 'v1')
  refused.writeRefused('k', 'v1')
  t.match(refused.readResult('k', 'v1'), { type: 'unknown-value' }, 'a refused write must not be visible')
})

t.test('a failed read-back is reported as unverifiable', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  t.match(h.finalState('k', { error: 'ECONNREFUSED' }), { type: 'unverifiable', key: 'k', expected: 'v1' })
  t.notOk(h.report().ok)
})

t.test('wrong content type on a correct value is reported', async (t) => {
  const h = new HistoryChecker()
  h.writeStarted('k', 'v1')
  h.writeAcked('k', 'v1')
  t.match(h.readResult('k', 'v1', { expected: 'text/plain', got: 'application/octet-stream' }), { type: 'wrong-content-type' })
})

// ---------------------------------------------------------------------------------
// The load generator end to end, against a fake store that can misbehave on purpose.

type Mode = 'correct' | 'stale' | 'lossy' | 'flaky' | 'always-created'

async function fakeStore (t: tap.Test, mode: Mode): Promise<string> {
  const data = new Map<string, { value: Buffer, type: string }>()
  const previous = new Map<string, { value: Buffer, type: string } | undefined>()
  let writes = 0
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const key = keyFromUrl(req.url ?? '/')
      if (mode === 'flaky' && Math.random() < 0.1) {
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"unavailable","message":"flaky"}')
        return
      }
      if (req.method === 'PUT' || req.method === 'DELETE') {
        writes++
        previous.set(key, data.get(key))
        const dropped = mode === 'lossy' && writes % 7 === 0
        if (!dropped) {
          if (req.method === 'PUT') data.set(key, { value: Buffer.concat(chunks), type: req.headers['content-type'] ?? '' })
          else data.delete(key)
        }
        const existed = previous.get(key) !== undefined
        if (req.method === 'PUT') res.writeHead(mode === 'always-created' || (mode === 'correct' && !existed) ? 201 : 200).end('{}')
        else res.writeHead(204).end()
        return
      }
      // 'stale' answers some reads from the value before the last write.
      const entry = mode === 'stale' && previous.has(key) && Math.random() < 0.3 ? previous.get(key) : data.get(key)
      if (entry === undefined) res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found","message":"no"}')
      else res.writeHead(200, { 'content-type': entry.type }).end(entry.value)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function runLoad (t: tap.Test, mode: Mode, opts: { mix?: { put: number, get: number, delete: number } } = {}): Promise<{ report: Awaited<ReturnType<LoadGenerator['verify']>>, stats: Awaited<ReturnType<LoadGenerator['run']>> }> {
  const baseUrl = await fakeStore(t, mode)
  const load = new LoadGenerator({ baseUrl, clients: 4, keysPerClient: 5, durationMs: 5000, maxOpsPerClient: 150, seed: 42, ...opts })
  t.teardown(() => load.close())
  const stats = await load.run()
  const report = await load.verify()
  return { report, stats }
}

t.test('load + verify against a correct store: clean', async (t) => {
  const { report, stats } = await runLoad(t, 'correct')
  t.equal(stats.ops, 600, 'bounded by count: 4 clients x 150 ops')
  t.equal(stats.failedRequests, 0)
  t.ok(stats.puts > 0 && stats.gets > 0 && stats.deletes > 0, 'all three operations ran')
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 20, 'every key was read back')
})

t.test('load + verify against a store that serves stale reads: caught', async (t) => {
  const { report } = await runLoad(t, 'stale')
  t.ok(report.staleReads.length > 0, `stale reads reported: ${report.staleReads.length}`)
  t.match(report.text, /stale-read key="h[0-9a-f]+\/c\d\/k\d" expected=/)
})

t.test('load + verify against a store that drops acknowledged writes: caught', async (t) => {
  const { report } = await runLoad(t, 'lossy', { mix: { put: 8, get: 1, delete: 1 } })
  // Every 7th write is acknowledged and dropped: later reads see the older state.
  t.ok(report.lostWrites.length + report.staleReads.length > 0, `lost writes ${report.lostWrites.length}, stale reads ${report.staleReads.length}`)
  t.notOk(report.ok, report.text)
})

t.test('load against a store answering 503s: failures counted, no false violations', async (t) => {
  const { report, stats } = await runLoad(t, 'flaky')
  t.ok(stats.failedRequests > 0, `failed requests counted: ${stats.failedRequests}`)
  t.match(stats.failures[0], { status: 503 })
  // Verification retries 503s; an unknown-outcome write that was in fact not applied is no violation.
  t.equal(report.staleReads.length, 0, report.text)
  t.equal(report.lostWrites.length, 0, report.text)
})

t.test('the load is bounded in time', async (t) => {
  const baseUrl = await fakeStore(t, 'correct')
  const load = new LoadGenerator({ baseUrl, clients: 2, keysPerClient: 2, durationMs: 300, maxOpsPerClient: 1_000_000, thinkMs: 5 })
  t.teardown(() => load.close())
  const started = Date.now()
  const stats = await load.run()
  t.ok(Date.now() - started < 2000, `stopped by itself after ${Date.now() - started} ms`)
  t.ok(stats.ops > 0 && stats.ops < 1_000_000)
  t.throws(() => new LoadGenerator({ baseUrl, clients: 1, keysPerClient: 1, durationMs: 0, maxOpsPerClient: 1 }), RangeError, 'an unbounded load is refused')
})

t.test('the load refuses non-loopback targets', async (t) => {
  const load = new LoadGenerator({ baseUrl: 'http://192.0.2.1:80', clients: 1, keysPerClient: 1, durationMs: 100, maxOpsPerClient: 1 })
  t.teardown(() => load.close())
  const stats = await load.run()
  t.equal(stats.failedRequests, 1)
  t.match(stats.failures[0]?.error, /127\.0\.0\.1 only/)
})

t.test('load + verify: the linearizability search runs over the same history', async (t) => {
  const { report } = await runLoad(t, 'correct')
  t.ok(report.ok, report.text)
  t.ok(report.linearizability !== undefined && report.linearizability.ops >= 600, `searched: ${report.linearizability?.text ?? ''}`)
  t.equal(report.linearizability?.violations.length, 0)
})

t.test('load + verify against a store that answers 201 Created to keys it holds: only the linearizability search catches it', async (t) => {
  const { report } = await runLoad(t, 'always-created', { mix: { put: 8, get: 1, delete: 1 } })
  t.equal(report.violations.length, 0, 'the pairwise checker sees nothing wrong (values are right)')
  t.notOk(report.ok, 'but the report is not ok')
  t.ok((report.linearizability?.violations.length ?? 0) > 0, 'non-linearizable keys reported')
  t.match(report.text, /NOT LINEARIZABLE key "h[0-9a-f]+\/c\d\/k\d"/)
  t.match(report.text, /→ 201/)
})

t.test('two writers on one key: overlapping acknowledged writes may land in either order, sequential ones may not', async (t) => {
  const overlapping = new HistoryChecker()
  // A retried write answered from its first attempt after a later write was acknowledged.
  overlapping.writeStarted('k', 'retried')
  overlapping.writeStarted('k', 'later')
  overlapping.writeAcked('k', 'later')
  overlapping.writeAcked('k', 'retried')
  t.equal(overlapping.finalState('k', 'later'), undefined, 'the overlapping write acknowledged first may be the final state')
  t.equal(overlapping.finalState('k', 'retried'), undefined, 'and so may the one acknowledged last')
  overlapping.writeStarted('k', 'after-both')
  overlapping.writeAcked('k', 'after-both')
  t.match(overlapping.finalState('k', 'later'), { type: 'lost-write' }, 'a write started after both were acknowledged supersedes both')

  const sequential = new HistoryChecker()
  sequential.writeStarted('k', 'first')
  sequential.writeAcked('k', 'first')
  sequential.writeStarted('k', 'second')
  sequential.writeAcked('k', 'second')
  t.match(sequential.finalState('k', 'first'), { type: 'lost-write', expected: 'second' }, 'a write acknowledged before the next was sent is superseded')
  t.match(sequential.readResult('k', 'first'), { type: 'stale-read' }, 'and reading it is stale')
})
