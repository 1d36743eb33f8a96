import t from 'tap'
import fc from 'fast-check'
import { START, answered, failed, nextStep, rewound, shipped, type ShipWindow } from '../../src/replication/ship-window'
import { RUNS } from './properties'

/** The pipelined replication stream's bookkeeping (src/replication/ship-window.ts). */

const at = (w: Partial<ShipWindow>): ShipWindow => ({ ...START, ...w })

t.test('nextStep: what the stream does next', async (t) => {
  const cases: Array<[string, ShipWindow, number, number, ReturnType<typeof nextStep>]> = [
    ['a new stream probes first', START, 10, 4, { kind: 'probe' }],
    ['caught up, nothing in flight: idle', at({ acked: 10, sent: 10 }), 10, 4, { kind: 'idle' }],
    ['behind: ship from where the last sent one ended', at({ acked: 5, sent: 8, inFlight: 1 }), 10, 4, { kind: 'ship', from: 8 }],
    ['the window full: wait', at({ acked: 2, sent: 8, inFlight: 4 }), 10, 4, { kind: 'wait' }],
    ['window 1: one in flight at a time', at({ acked: 2, sent: 3, inFlight: 1 }), 10, 1, { kind: 'wait' }],
    ['everything sent, answers pending: wait', at({ acked: 5, sent: 10, inFlight: 2 }), 10, 4, { kind: 'wait' }],
    ['broken with shipments in flight: let them settle', at({ acked: 5, sent: 9, inFlight: 2, broken: true }), 10, 4, { kind: 'wait' }],
    ['broken and settled: probe', at({ acked: 5, sent: 9, inFlight: 0, broken: true }), 10, 4, { kind: 'probe' }],
    ['a window below 1 counts as 1', at({ acked: 2, sent: 2 }), 10, 0, { kind: 'ship', from: 2 }]
  ]
  for (const [name, w, local, window, want] of cases) t.same(nextStep(w, local, window), want, name)
})

t.test('transitions', async (t) => {
  let w = rewound(START, 3)
  t.same(w, { acked: 3, sent: 3, inFlight: 0, broken: false }, 'a probe answer starts the stream there')
  w = shipped(shipped(w, 5), 9)
  t.same(w, { acked: 3, sent: 9, inFlight: 2, broken: false }, 'sends move `sent`, never `acked`')
  w = answered(w, 5)
  t.same(w, { acked: 5, sent: 9, inFlight: 1, broken: false }, 'an answer moves `acked` to the position the replica answered')
  w = failed(w)
  t.same(w, { acked: 5, sent: 9, inFlight: 0, broken: true }, 'a failure breaks the stream; acked stays what was answered')
  t.same(nextStep(w, 12, 4), { kind: 'probe' }, 'then a probe')
  w = rewound(w, 5)
  t.same(nextStep(w, 12, 4), { kind: 'ship', from: 5 }, 'and `sent` rewinds to the answer')
  t.equal(answered(at({ acked: 9, sent: 12, inFlight: 1 }), 7).acked, 9, 'a late, lower answer does not move acked back')
  t.equal(rewound(at({ acked: 9, sent: 9, broken: true }), 0).acked, 0, 'a replica that resynced from empty: acked follows its answer down')
})

/**
 * A replica that applies a shipment only when it continues exactly where it stands (as
 * replication-api.ts does), a network that delivers in order or not, loses shipments, and
 * a primary whose log grows: the stream's `acked` is always a position the replica
 * answered and never more than it holds, sends are contiguous between rewinds, and once
 * the network behaves the replica catches up.
 */
type Event = { e: 'write', n: number } | { e: 'step' } | { e: 'deliver', i: number } | { e: 'lose', i: number }
const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ e: fc.constant('write' as const), n: fc.integer({ min: 1, max: 5 }) }),
  fc.constant({ e: 'step' as const }),
  fc.constant({ e: 'step' as const }),
  fc.record({ e: fc.constant('deliver' as const), i: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 7 })) }),
  fc.record({ e: fc.constant('lose' as const), i: fc.integer({ min: 0, max: 7 }) })
)

interface Sim { w: ShipWindow, local: number, replica: number, net: Array<{ from: number, to: number }>, answers: Set<number>, nextFrom: number | undefined }

function step (s: Sim, window: number, batch: number): void {
  const next = nextStep(s.w, s.local, window)
  if (next.kind === 'ship') {
    if (next.from !== s.nextFrom) throw new Error(`a send from ${next.from} after one that ended at ${String(s.nextFrom)}`)
    const to = Math.min(s.local, next.from + batch)
    s.net.push({ from: next.from, to })
    s.w = shipped(s.w, to)
    s.nextFrom = to
  } else if (next.kind === 'probe') {
    if (s.net.length > 0) throw new Error('a probe with shipments in flight')
    s.answers.add(s.replica)
    s.w = rewound(s.w, s.replica)
    s.nextFrom = s.replica
  }
}

function deliver (s: Sim, i: number): void {
  const [m] = s.net.splice(i % s.net.length, 1)
  if (m === undefined) return
  if (m.from === s.replica) {
    s.replica = m.to
    s.answers.add(m.to)
    s.w = answered(s.w, m.to)
  } else {
    s.w = failed(s.w)
  }
}

function check (s: Sim, window: number): void {
  if (s.w.acked !== -1 && !s.answers.has(s.w.acked)) throw new Error(`acked ${s.w.acked} was never answered`)
  if (s.w.acked > s.replica) throw new Error(`acked ${s.w.acked} past the replica's ${s.replica}`)
  if (s.w.inFlight !== s.net.length) throw new Error(`inFlight ${s.w.inFlight} but ${s.net.length} on the wire`)
  if (s.w.inFlight > Math.max(1, window)) throw new Error(`${s.w.inFlight} in flight over a window of ${window}`)
}

t.test('property: acked is only ever answered, sends are contiguous, the replica catches up', async (t) => {
  fc.assert(fc.property(fc.array(event, { maxLength: 80 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), (events, window, batch) => {
    const s: Sim = { w: START, local: 0, replica: 0, net: [], answers: new Set(), nextFrom: undefined }
    for (const ev of events) {
      if (ev.e === 'write') s.local += ev.n
      else if (ev.e === 'step') step(s, window, batch)
      else if (s.net.length > 0) {
        if (ev.e === 'deliver') deliver(s, ev.i)
        else { s.net.splice(ev.i % s.net.length, 1); s.w = failed(s.w) }
      }
      check(s, window)
    }
    // A network that delivers in order from here on: the stream converges.
    for (let i = 0; i < 10_000 && nextStep(s.w, s.local, window).kind !== 'idle'; i++) {
      if (s.net.length > 0 && nextStep(s.w, s.local, window).kind === 'wait') deliver(s, 0)
      else step(s, window, batch)
      check(s, window)
    }
    return s.replica === s.local && s.w.acked === s.local && s.w.inFlight === 0
  }), RUNS)
  t.pass('holds')
})
