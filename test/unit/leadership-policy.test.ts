import t from 'tap'
import { holdsLeadership, renewalIntervalMs, safetyMarginMs } from '../../src/registry/leadership-policy'

t.test('a coordinator leads only inside its lease, minus the margin, by its own clock', async (t) => {
  const ttlMs = 3000
  const table: Array<{ name: string, renewalSentAt: number | undefined, lost: boolean, now: number, want: boolean }> = [
    { name: 'never elected', renewalSentAt: undefined, lost: false, now: 0, want: false },
    { name: 'just renewed', renewalSentAt: 1000, lost: false, now: 1000, want: true },
    { name: 'inside TTL minus margin', renewalSentAt: 1000, lost: false, now: 2999, want: true },
    { name: 'at TTL minus margin: stops', renewalSentAt: 1000, lost: false, now: 3000, want: false },
    { name: 'past the TTL', renewalSentAt: 1000, lost: false, now: 4500, want: false },
    { name: 'etcd said the lease is gone', renewalSentAt: 1000, lost: true, now: 1001, want: false }
  ]
  for (const r of table) t.equal(holdsLeadership({ renewalSentAt: r.renewalSentAt, ttlMs, lost: r.lost }, r.now), r.want, r.name)
})

t.test('renewals come often enough that one may fail before the margin is reached', async (t) => {
  for (const ttlMs of [1000, 2000, 3000, 5000, 10_000, 60_000]) {
    const interval = renewalIntervalMs(ttlMs)
    const margin = safetyMarginMs(ttlMs)
    t.ok(2 * interval < ttlMs - margin, `ttl ${ttlMs}: renew every ${interval} ms, stop ${margin} ms before the end`)
    t.ok(margin >= 500 && margin < ttlMs, `ttl ${ttlMs}: a margin of ${margin} ms`)
  }
})
