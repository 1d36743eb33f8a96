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

t.test('warm-up runs until two slices agree, or until the time is up', async (t) => {
  // A target that speeds up 20× after 150 ms (a cold path), then holds steady: a contrast that
  // timers firing late on a busy machine cannot blur.
  const start = Date.now()
  const op = async (): Promise<number> => { await sleep(Date.now() - start < 150 ? 40 : 2); return 1 }
  const w = await warmUp({ connections: 2, op }, 2000, 100, 0.25)
  t.ok(w.steady, `steady after ${w.seconds} s: ${w.slices.map(Math.round).join(', ')}`)
  t.ok(w.seconds >= 0.3 && w.seconds < 2, 'longer than the cold phase, shorter than the cap')
  t.ok(w.slices.length >= 3)
  // Every 100 ms the op takes three times as long: never steady. (Long sleeps and 8 loops, so that
  // timers firing late on a busy machine cannot make two neighbouring slices look alike.)
  const slowFrom = Date.now()
  const slowing = await warmUp({ connections: 8, op: async () => { await sleep(4 * 3 ** Math.floor((Date.now() - slowFrom) / 100)); return 1 } }, 400, 100, 0.05)
  t.equal(slowing.steady, false, 'a rate that never settles stops at the cap')
  t.equal(slowing.seconds, 0.4)
})
