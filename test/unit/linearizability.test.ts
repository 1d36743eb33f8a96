import t from 'tap'
import { checkKey, describeOp, type LinOp } from '../harness/linearizability'
import { checkLinearizable, LinHistory } from '../harness/linearizability-history'
import { prng } from '../harness/history'

/**
 * The linearizability checker (test/harness/linearizability.ts) against histories whose
 * verdict is known: hand-written ones (each a pattern a real bug leaves), and random
 * histories generated from the model itself (valid by construction), then mutated into
 * invalid ones.
 */

type Spec = [client: number, kind: LinOp['kind'], value: string | null, invoke: number, complete: number | null, status: number | null, extra?: Partial<LinOp>]

/** A compact history: [client, kind, value (PUT: written, GET: read), invoke, complete, status]. */
function h (key: string, specs: Spec[]): LinOp[] {
  return specs.map(([client, kind, value, invoke, complete, status, extra]) => {
    const op: LinOp = { key, client, kind, invokeMs: invoke }
    if (kind === 'put' && value !== null) op.value = value
    if (kind === 'get' && value !== null) op.got = value
    if (complete !== null) op.completeMs = complete
    if (status !== null) op.status = status
    return { ...op, ...extra }
  })
}

t.test('a valid concurrent history is linearizable', async (t) => {
  const ops = h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 5, 40, 200],
    [3, 'get', 'v1', 12, 20, 200], // before v2 takes effect
    [4, 'get', 'v2', 15, 45, 200], // after
    [1, 'delete', null, 30, 50, 204],
    [3, 'get', null, 55, 60, 404],
    [4, 'put', 'v3', 46, 70, 201], // after the delete
    [2, 'get', 'v3', 71, 80, 200]
  ])
  const r = checkKey('k', ops)
  t.equal(r.verdict, 'ok', r.explanation ?? 'ok')
  t.equal(r.ops, 8)
})

t.test('a flip-flop read (v1, v2, v1 after v2 was seen) is not', async (t) => {
  const r = checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 15, 100, 200],
    [3, 'get', 'v1', 20, 30, 200],
    [3, 'get', 'v2', 40, 50, 200],
    [3, 'get', 'v1', 60, 70, 200]
  ]))
  t.equal(r.verdict, 'violation')
  t.match(r.explanation, /could not take effect before it completed: c3 GET \[60\.0–70\.0\] → 200 "v1"/)
})

t.test('the bug report of issue 15: one DELETE applied twice across a failover', async (t) => {
  // k-8 as the report shows it (plus the earlier write that made the key exist; no other DELETE).
  const ops = h('k-8', [
    [7, 'put', 'v44', 5000, 5100, 201],
    [12, 'delete', null, 5450.4, 7784.7, 204],
    [13, 'get', null, 5527.9, 7728.7, 404],
    [4, 'put', 'v45', 5549.6, 7753.3, 201],
    [19, 'put', 'v46', 5533.7, 7750.1, 200],
    [22, 'put', 'v48', 5700.1, 7759.0, 200],
    [19, 'put', 'v47', 7750.2, 7768.6, 200],
    [23, 'get', null, 7781.9, 7808.8, 404],
    [12, 'put', 'v49', 7784.8, 7811.3, 201]
  ])
  const r = checkKey('k-8', ops, { originMs: 0 })
  t.equal(r.verdict, 'violation', 'not linearizable')
  t.match(r.explanation, /linearized at best/)
  t.match(r.explanation, /c12 DELETE \[5450\.4–7784\.7\] → 204/, 'the explanation lists the DELETE among the ops around the point of failure')
  t.comment(r.explanation)
  // The same history from an absent key is linearizable (the delete then needs to happen once only).
  t.equal(checkKey('k-8', ops.slice(1)).verdict, 'ok', 'without the earlier write it is fine: the evidence is the 201')
  // And with a second DELETE acknowledged in between, it is fine too.
  const withSecond = [...ops, ...h('k-8', [[30, 'delete', null, 7000, 7500, 204]])]
  t.equal(checkKey('k-8', withSecond).verdict, 'ok', 'two deletes explain it')
})

t.test('a write seen after it was overwritten is not linearizable', async (t) => {
  const r = checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 5, 15, 200],
    [3, 'get', 'v2', 20, 30, 200],
    [3, 'get', 'v1', 40, 50, 200]
  ]))
  t.equal(r.verdict, 'violation')
  // Swap the two PUTs' answers and the order v2 then v1 no longer fits either: v1 answered 201 is first.
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 5, 15, 200],
    [3, 'get', 'v1', 8, 12, 200],
    [3, 'get', 'v2', 40, 50, 200]
  ])).verdict, 'ok', 'the same reads the other way round are fine')
})

t.test('a stale read after an acknowledged write is not linearizable', async (t) => {
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'get', null, 20, 30, 404]
  ])).verdict, 'violation', 'absent after an acknowledged PUT')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [1, 'delete', null, 20, 30, 204],
    [2, 'get', 'v1', 40, 50, 200]
  ])).verdict, 'violation', 'a value after an acknowledged DELETE')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'get', null, 5, 30, 404]
  ])).verdict, 'ok', 'a read concurrent with the write may miss it')
})

t.test('201 Created for a key that existed is not linearizable; 200 for an absent key neither', async (t) => {
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, 30, 201]
  ])).verdict, 'violation', 'two 201s in a row')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 200]
  ])).verdict, 'violation', '200 on a key nobody wrote')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 5, 30, 201],
    [3, 'delete', null, 5, 30, 204]
  ])).verdict, 'ok', 'two 201s with a concurrent DELETE between them')
})

t.test('unknown-outcome writes: may appear later and stay, may never appear, but cannot come and go', async (t) => {
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, null, null],
    [3, 'get', 'v1', 30, 40, 200],
    [3, 'get', 'v2', 50, 60, 200],
    [3, 'get', 'v2', 100, 110, 200, { note: 'final read' }]
  ])).verdict, 'ok', 'an unknown write that shows up later')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, null, null],
    [3, 'get', 'v1', 30, 40, 200],
    [3, 'get', 'v1', 100, 110, 200]
  ])).verdict, 'ok', 'an unknown write that never shows up')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, 25, 503],
    [3, 'get', 'v1', 30, 40, 200]
  ])).verdict, 'ok', 'a 5xx is an unknown outcome too')
  const r = checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, null, null],
    [3, 'get', 'v2', 30, 40, 200],
    [3, 'get', 'v1', 50, 60, 200],
    [3, 'get', 'v2', 70, 80, 200]
  ]))
  t.equal(r.verdict, 'violation', 'an unknown write that shows up, disappears and reappears')
  t.equal(r.unknown, 1)
  t.match(r.explanation, /outcome unknown/)
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, null, null],
    [3, 'get', 'v2', 5, 15, 200]
  ])).verdict, 'violation', 'an unknown write cannot take effect before it was sent')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [3, 'get', 'v2', 20, null, null],
    [3, 'get', 'v9', 20, 25, 502]
  ])).verdict, 'ok', 'reads without an answer are dropped')
})

t.test('conditional writes: If-Match, If-None-Match and 412', async (t) => {
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201, { etag: 'e1' }],
    [2, 'put', 'v2', 20, 30, 200, { etag: 'e2', ifMatch: 'e1' }],
    [3, 'put', 'v3', 40, 50, 412, { ifMatch: 'e1' }],
    [3, 'put', 'v4', 60, 70, 412, { ifNoneMatch: true }],
    [3, 'get', 'v2', 80, 90, 200, { etag: 'e2' }]
  ])).verdict, 'ok', 'a valid conditional history')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201, { etag: 'e1' }],
    [2, 'put', 'v2', 20, 30, 200, { etag: 'e2' }],
    [3, 'put', 'v3', 40, 50, 200, { etag: 'e3', ifMatch: 'e1' }]
  ])).verdict, 'violation', 'If-Match on an overwritten version succeeded')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201, { etag: 'e1' }],
    [3, 'put', 'v3', 40, 50, 412, { ifMatch: 'e1' }]
  ])).verdict, 'violation', 'If-Match on the current version refused')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201, { etag: 'e1' }],
    [3, 'put', 'v3', 40, 50, 412]
  ])).verdict, 'violation', 'a 412 without a condition')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201, { etag: 'e1' }],
    [3, 'get', 'v1', 40, 50, 200, { etag: 'e9' }]
  ])).verdict, 'violation', 'a read of the right value with another version')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, null, null],
    [3, 'get', 'v1', 40, 50, 200, { etag: 'e1' }],
    [3, 'put', 'v2', 60, 70, 200, { etag: 'e2', ifMatch: 'e1' }],
    [3, 'put', 'v3', 80, 90, 200, { etag: 'e3', ifMatch: 'e1' }]
  ])).verdict, 'violation', 'the ETag of an unknown-outcome write learnt by a read is checked')
  t.equal(checkKey('k', h('k', [
    [1, 'put', 'v1', 0, 10, 201],
    [2, 'put', 'v2', 20, 30, 409]
  ])).verdict, 'ok', 'another 4xx refused the write: it changed nothing')
})

t.test('a history of many keys: per-key verdicts and a readable report', async (t) => {
  const ops = [
    ...h('good', [[1, 'put', 'a', 0, 10, 201], [2, 'get', 'a', 20, 30, 200]]),
    ...h('bad', [[1, 'put', 'b', 0, 10, 201], [2, 'get', null, 20, 30, 404]])
  ]
  const r = checkLinearizable(ops)
  t.notOk(r.ok)
  t.equal(r.keys, 2)
  t.equal(r.ops, 4)
  t.same(r.violations.map((v) => v.key), ['bad'])
  t.match(r.text, /2 keys, 4 ops \(0 with unknown outcome\)/)
  t.match(r.text, /NOT LINEARIZABLE key "bad"/)
  t.match(describeOp(ops[3]!), /^c2 GET \[20\.0–30\.0\] → 404$/)
  t.ok(checkLinearizable(ops.slice(0, 2)).ok)
})

t.test('LinHistory records intervals on one clock', async (t) => {
  const hist = new LinHistory()
  const a = hist.invoke({ key: 'k', client: 1, kind: 'put', value: 'x' })
  hist.ok(a, 201, { etag: 'e' })
  const b = hist.invoke({ key: 'k', client: 2, kind: 'put', value: 'y' })
  hist.unknown(b, 'ECONNRESET')
  const c = hist.invoke({ key: 'k', client: 1, kind: 'get' })
  hist.ok(c, 200, { got: 'y' })
  t.ok(a.completeMs! >= a.invokeMs)
  t.equal(b.completeMs, undefined)
  const r = hist.check()
  t.ok(r.ok, r.text)
  t.equal(r.unknown, 1)
})

t.test('the search is bounded: a budget that runs out is inconclusive, not ok', async (t) => {
  // Many concurrent writes and a read that fits none of them force a wide search.
  const specs: Spec[] = [[0, 'put', 'v0', 0, 1, 201]]
  for (let i = 1; i <= 12; i++) specs.push([i, 'put', `v${i}`, 10, 100, 200])
  specs.push([99, 'get', 'nope', 10, 100, 200])
  const r = checkKey('k', h('k', specs), { maxStepsPerKey: 500 })
  t.equal(r.verdict, 'inconclusive')
  t.match(r.explanation, /search budget exhausted/)
  const full = checkKey('k', h('k', specs))
  t.equal(full.verdict, 'violation', `with the default budget it is decided (${full.steps} steps, ${full.ms.toFixed(0)} ms)`)
  const report = checkLinearizable(h('k', specs), { maxStepsPerKey: 500 })
  t.ok(report.ok, 'inconclusive is not a violation…')
  t.equal(report.inconclusive.length, 1, '…but it is counted')
  t.match(report.text, /INCONCLUSIVE key "k"/)
})

// ---------------------------------------------------------------------------------
// Property-style: histories generated from the model are linearizable; a read changed to
// a value that was certainly overwritten before the read began is not.

interface Generated { ops: LinOp[], reads: number[] }

/**
 * A random valid history of one key: ops take effect at points 10 ms apart, in the order
 * generated; each op's interval covers its point with random jitter (so up to `overlap`
 * ops overlap), ops of one client never overlap. Some writes have an unknown outcome (applied or not).
 */
function generate (seed: number, n: number, clients: number, overlap = clients): Generated {
  const rand = prng(seed)
  const ops: LinOp[] = []
  let state: { value: string, etag: string } | null = null
  const spacing = 10
  const jitter = (Math.min(overlap, clients) * spacing) / 2 - 1
  for (let i = 0; i < n; i++) {
    const point = i * spacing
    const op: LinOp = {
      key: 'k',
      client: i % clients,
      kind: 'get',
      invokeMs: point - rand() * jitter,
      completeMs: point + rand() * jitter
    }
    const r = rand()
    if (r < 0.4) {
      op.kind = 'put'
      op.value = `v${i}`
      const etag = `e${i}`
      const c = rand()
      if (c < 0.15 && state !== null) op.ifMatch = rand() < 0.6 ? state.etag : `e${Math.floor(rand() * i)}x`
      else if (c < 0.25) op.ifNoneMatch = true
      const holds = (op.ifMatch === undefined || (state !== null && state.etag === op.ifMatch)) && (op.ifNoneMatch !== true || state === null)
      if (rand() < 0.1) {
        // Unknown outcome: applied or not, nobody knows.
        delete op.completeMs
        if (holds && rand() < 0.5) state = { value: op.value, etag }
      } else if (!holds) {
        op.status = 412
      } else {
        op.status = state === null ? 201 : 200
        op.etag = etag
        state = { value: op.value, etag }
      }
    } else if (r < 0.55) {
      op.kind = 'delete'
      if (rand() < 0.1) {
        delete op.completeMs
        if (rand() < 0.5) state = null
      } else {
        op.status = 204
        state = null
      }
    } else {
      if (state === null) op.status = 404
      else {
        op.status = 200
        op.got = state.value
        op.etag = state.etag
      }
    }
    ops.push(op)
  }
  const reads = ops.map((o, i) => o.kind === 'get' ? i : -1).filter((i) => i >= 0)
  return { ops, reads }
}

/**
 * Changes one read to a value certainly not current during it: written by an
 * acknowledged PUT that completed before an acknowledged write (PUT or DELETE) began,
 * which itself completed before the read began. Returns false if no read qualifies.
 */
function mutate (g: Generated, rand: () => number): boolean {
  const acked = g.ops.filter((o) => o.kind !== 'get' && o.completeMs !== undefined && o.status !== undefined && o.status < 300)
  const order = [...g.reads].sort(() => rand() - 0.5)
  for (const ri of order) {
    const read = g.ops[ri]!
    const over = acked.filter((w) => (w.completeMs as number) < read.invokeMs)
    const candidates = acked.filter((p) => p.kind === 'put' && p.value !== read.got &&
      over.some((w) => w !== p && w.invokeMs > (p.completeMs as number)))
    if (candidates.length === 0) continue
    const p = candidates[Math.floor(rand() * candidates.length)]!
    read.status = 200
    read.got = p.value
    read.etag = p.etag
    return true
  }
  return false
}

t.test('random valid histories are linearizable; one overwritten read makes them not', async (t) => {
  const rand = prng(20260515)
  let checked = 0
  let mutated = 0
  let ops = 0
  let ms = 0
  for (let i = 0; i < 60; i++) {
    const seed = Math.floor(rand() * 2 ** 31)
    const n = 50 + Math.floor(rand() * 250)
    const clients = 2 + Math.floor(rand() * 23)
    const overlap = 2 + Math.floor(rand() * 9)
    const g = generate(seed, n, clients, overlap)
    const r = checkKey('k', g.ops)
    ops += r.ops
    ms += r.ms
    if (r.verdict !== 'ok') {
      t.fail(`seed ${seed} n ${n} clients ${clients} overlap ${overlap}: a generated history was judged ${r.verdict}\n${r.explanation ?? ''}`)
      continue
    }
    checked++
    if (!mutate(g, rand)) continue
    const bad = checkKey('k', g.ops)
    if (bad.verdict !== 'violation') t.fail(`seed ${seed} n ${n} clients ${clients} overlap ${overlap}: a mutated history was judged ${bad.verdict}`)
    else mutated++
  }
  t.equal(checked, 60, 'every generated history is linearizable')
  t.ok(mutated >= 40, `every mutated history is not (${mutated} mutated)`)
  t.comment(`${ops} ops checked in ${ms.toFixed(0)} ms`)
})

t.test('a large history: a few thousand ops on one key, 24 clients, in well under the budget', async (t) => {
  // 24 clients over a few hot keys: each op of a key overlaps a few others of it.
  const g = generate(7, 4000, 24, 6)
  const r = checkKey('k', g.ops)
  t.equal(r.verdict, 'ok', r.explanation ?? 'ok')
  t.ok(r.ms < 5000, `4000 ops checked in ${r.ms.toFixed(0)} ms (${r.steps} steps, ${r.unknown} unknown)`)
  t.comment(`4000 ops / 24 clients: ${r.ms.toFixed(0)} ms, ${r.steps} steps, ${Math.round(r.ops / (r.ms / 1000))} ops/s`)
  // A read deep in it changed: without unknown outcomes the violation is found at once;
  // with ~200 of them (each may take effect at any later point) proving that no order
  // fits can exceed the budget: then the verdict is 'inconclusive', never 'ok'.
  const known = { ops: g.ops.filter((o) => o.completeMs !== undefined), reads: [] as number[] }
  known.reads = known.ops.map((o, i) => o.kind === 'get' ? i : -1).filter((i) => i >= 0)
  mutate(known, prng(8))
  const bad = checkKey('k', known.ops)
  t.equal(bad.verdict, 'violation', `mutated, no unknown outcomes: ${bad.verdict} in ${bad.ms.toFixed(0)} ms, ${bad.steps} steps`)
  mutate(g, prng(8))
  const hard = checkKey('k', g.ops, { maxMsPerKey: 2000 })
  t.not(hard.verdict, 'ok', `mutated, ${hard.unknown} unknown outcomes: ${hard.verdict} in ${hard.ms.toFixed(0)} ms, ${hard.steps} steps`)
})
