import t from 'tap'
import { latencySummary, newHistogram, pick, recordMs, runLoad, warmUp } from '../../bench/engine'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

t.test('closed loop: each loop has one request in flight', async (t) => {
  let inFlight = 0
  let maxInFlight = 0
  const r = await runLoad({
    connections: 4,
    durationMs: 300,
    op: async () => {
      maxInFlight = Math.max(maxInFlight, ++inFlight)
      await sleep(10)
      inFlight--
      return 1
    }
  })
  t.equal(maxInFlight, 4, 'never more requests in flight than connections')
  // 4 loops × 300 ms / ~10 ms: timers on a busy machine only ever run late, so bound from above.
  t.ok(r.requests > 20 && r.requests <= 4 * 30, `requests ${r.requests}`)
  t.equal(r.keys, r.requests)
  t.ok(Math.abs(r.durationS - 0.3) < 0.05, `window is the duration (${r.durationS})`)
  t.equal(r.reqPerSec, r.requests / r.durationS)
  t.ok(r.latencyMs.p50 >= 9.5, `p50 ${r.latencyMs.p50} ms is the op's time`)
  t.ok(r.latencyMs.p99 >= r.latencyMs.p50 && r.latencyMs.p999 >= r.latencyMs.p99 && r.latencyMs.max >= r.latencyMs.p999)
  t.equal(r.errors, 0)
})

t.test('keys per request, errors apart from latency', async (t) => {
  let n = 0
  const r = await runLoad({
    connections: 2,
    durationMs: 200,
    op: async () => {
      await sleep(2)
      if (++n % 2 === 0) throw new Error(`boom ${n}`)
      return 100
    }
  })
  t.ok(r.errors > 0, 'failures counted')
  t.ok(Math.abs(r.errors - r.requests) <= 2, `half fail (${r.errors} vs ${r.requests})`)
  t.equal(r.keys, r.requests * 100, 'a batch counts its keys')
  // Two divisions by the same duration, in a different order: equal up to rounding.
  t.ok(Math.abs(r.keysPerSec - r.reqPerSec * 100) <= 1e-9 * r.keysPerSec, `keys/s ${r.keysPerSec} = 100 × req/s ${r.reqPerSec}`)
  t.match(r.firstError, /^boom \d+$/)
})

t.test('an instantly failing target does not starve the event loop', async (t) => {
  let timerFired = false
  setTimeout(() => { timerFired = true }, 20)
  const r = await runLoad({ connections: 2, durationMs: 100, op: () => Promise.reject(new Error('refused')) })
  t.ok(timerFired, 'timers still run')
  t.equal(r.requests, 0)
  t.ok(r.errors > 0)
  t.ok(Number.isNaN(r.latencyMs.p50), 'no successes: no latency')
})

t.test('abort ends the run early', async (t) => {
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 50)
  const t0 = Date.now()
  const r = await runLoad({ connections: 2, durationMs: 5000, signal: ac.signal, op: async () => { await sleep(1); return 1 } })
  t.ok(Date.now() - t0 < 1000, 'returned soon after the abort')
  t.ok(r.durationS < 1)
})

t.test('histogram: microsecond resolution, clamped at both ends', async (t) => {
  const h = newHistogram()
  for (let i = 1; i <= 1000; i++) recordMs(h, i / 100) // 0.01 .. 10 ms
  recordMs(h, 0)
  recordMs(h, 120_000)
  const s = latencySummary(h)
  t.ok(Math.abs(s.p50 - 5) < 0.01, `p50 ${s.p50}`)
  t.ok(Math.abs(s.p99 - 9.9) < 0.02, `p99 ${s.p99}`)
  t.ok(s.max >= 59_000 && s.max <= 60_100, `over-long clamped to 60 s (${s.max})`)
  h.destroy()
  t.ok(Number.isNaN(latencySummary(newHistogram()).p50))
})

t.test('pick', async (t) => {
  t.equal(pick(['only']), 'only')
  const seen = new Set(Array.from({ length: 200 }, () => pick([1, 2, 3])))
  t.same([...seen].sort(), [1, 2, 3])
  t.throws(() => pick([]), RangeError)
})

t.test('warm-up runs until three slices agree, or until the time is up', async (t) => {
  // A target that speeds up 20× after 150 ms (a cold path), then holds steady: a contrast that
  // timers firing late on a busy machine cannot blur.
  const start = Date.now()
  const op = async (): Promise<number> => { await sleep(Date.now() - start < 150 ? 40 : 2); return 1 }
  const w = await warmUp({ connections: 2, op }, { maxMs: 2000, sliceMs: 100, tolerance: 0.25 })
  t.ok(w.steady, `steady after ${w.seconds} s: ${w.slices.map(Math.round).join(', ')}`)
  t.ok(w.seconds >= 0.3 && w.seconds < 2, 'longer than the cold phase, shorter than the cap')
  t.ok(w.slices.length >= 3)
  // Every 100 ms the op takes three times as long: never steady. (Long sleeps and 8 loops, so that
  // timers firing late on a busy machine cannot make two neighbouring slices look alike.)
  const slowFrom = Date.now()
  const slowing = await warmUp({ connections: 8, op: async () => { await sleep(4 * 3 ** Math.floor((Date.now() - slowFrom) / 100)); return 1 } }, { maxMs: 400, sliceMs: 100, tolerance: 0.05 })
  t.equal(slowing.steady, false, 'a rate that never settles stops at the cap')
  t.equal(slowing.seconds, 0.4)
})

t.test('a slow decline is not steady: three slices must agree, not two', async (t) => {
  // A steady rate whose CPU per request falls 8% every 100 ms for 600 ms, then holds: two
  // neighbouring slices agree within 10% all along, three span 15% until the decline ends.
  const start = Date.now()
  let cpu = 0
  const op = async (): Promise<number> => {
    cpu += 0.0001 * 0.92 ** Math.min(6, Math.floor((Date.now() - start) / 100))
    await sleep(4)
    return 1
  }
  const w = await warmUp({ connections: 4, op }, { maxMs: 3000, sliceMs: 100, tolerance: 0.1, cpuSeconds: () => cpu })
  t.ok(w.seconds >= 0.6, `not steady before the decline ended (${w.seconds} s: ${w.cpuSlices.map((us) => us.toFixed(1)).join(', ')} µs)`)
})

t.test('with a CPU sampler, warm-up also waits for the CPU per request to settle', async (t) => {
  // A steady rate whose server CPU per request falls 3× every 100 ms for the first 400 ms (a
  // JIT compiling while something else bounds the rate), then holds: the rate alone would
  // call it steady after two slices.
  const start = Date.now()
  let cpu = 0
  const op = async (): Promise<number> => {
    const age = Date.now() - start
    cpu += age < 400 ? 0.001 * 3 ** -Math.floor(age / 100) : 0.00001
    await sleep(4)
    return 1
  }
  const w = await warmUp({ connections: 4, op }, { maxMs: 3000, sliceMs: 100, tolerance: 0.25, cpuSeconds: () => cpu })
  const slices = w.cpuSlices.map((us) => us.toFixed(1)).join(', ')
  t.ok(w.steady, `steady once the CPU settled: ${slices} µs`)
  t.ok(Date.now() - start >= 500, 'not before the CPU per request stopped falling (and three slices agreed after)')
  t.equal(w.cpuSlices.length, w.slices.length, 'a CPU figure for every slice')
  t.ok((w.cpuSlices.at(-1) ?? Infinity) < 20, 'the last slices are the settled cost')
})
