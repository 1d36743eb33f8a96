import t from 'tap'
import { describeTimeline, failoverTimeline, medianTimeline, type LogLine } from '../../bench/failover-timeline'

const KILL = 1_000_000
const V = 'http://127.0.0.1:7001'
const line = (dt: number, fields: Record<string, unknown>): LogLine => ({ time: KILL + dt, ...fields })

t.test('failoverTimeline reads each step from its first event after the kill', async (t) => {
  const lines: LogLine[] = [
    line(-50, { event: 'lease-failed', group: 'g1' }), // before the kill: another failover
    line(20, { event: 'lease-failed', group: 'g1' }),
    line(30, { event: 'node-health', url: V, health: 'down' }),
    line(700, { event: 'map-installed', epoch: 9 }),
    line(705, { event: 'map-installed', epoch: 9 }),
    line(710, { event: 'map-changed', epoch: 9 }),
    line(712, { event: 'map-followed', epoch: 9 }),
    line(715, { event: 'failover', group: 'g1', from: V, epoch: 9, term: 3, transitionMs: 25, leaseUntil: new Date(KILL + 680).toISOString() }),
    line(716, { event: 'lease-granted', group: 'g1', term: 3 }),
    line(2000, { event: 'map-installed', epoch: 9 }) // the restarted node catching up: not part of the transition
  ]
  t.same(failoverTimeline(lines, { group: 'g1', victim: V, killedAt: KILL, ackedAt: KILL + 730 }), {
    noticed: 20, leaseOver: 680, promoting: 690, installed: 705, published: 710, leased: 716, routed: 712, acked: 730
  })
  const none = failoverTimeline([], { group: 'g1', victim: V, killedAt: KILL, ackedAt: KILL + 5 })
  t.same(none, { noticed: undefined, leaseOver: undefined, promoting: undefined, installed: undefined, published: undefined, leased: undefined, routed: undefined, acked: 5 }, 'no logs: only the measured ack')
})

t.test('medianTimeline and describeTimeline', async (t) => {
  t.same(medianTimeline([{ noticed: 10, acked: 100 }, { noticed: 30, acked: 300 }, { acked: 200 }]), { noticed: 20, acked: 200 })
  t.equal(describeTimeline({ noticed: 10, acked: 100 }), 'noticed 10 (+10) · leaseOver ? · promoting ? · installed ? · published ? · leased ? · routed ? · acked 100 (+90)')
})
