import t from 'tap'
import { redundancyNotices, redundancyOf, type RedundancyNode } from '../../src/replication/redundancy'

t.test('redundancyOf counts in-sync replicas that are not down', async (t) => {
  const p: RedundancyNode = { role: 'primary', health: 'up' }
  const table: Array<[string, RedundancyNode[], number, string]> = [
    ['no replicas', [p], 0, 'unreplicated'],
    ['one in-sync replica', [p, { role: 'replica', inSync: true, health: 'up' }], 1, 'ok'],
    ['health not known yet counts', [p, { role: 'replica', inSync: true, health: 'unknown' }], 1, 'ok'],
    ['in sync but down', [p, { role: 'replica', inSync: true, health: 'down' }], 0, 'none'],
    ['after a failover: the old primary, out of sync', [p, { role: 'replica', inSync: false, health: 'down' }], 0, 'none'],
    ['resyncing', [p, { role: 'replica', inSync: false, health: 'up' }], 0, 'none'],
    ['two, one in sync', [p, { role: 'replica', inSync: false, health: 'up' }, { role: 'replica', inSync: true, health: 'up' }], 1, 'ok'],
    ['two in sync', [p, { role: 'replica', inSync: true, health: 'up' }, { role: 'replica', inSync: true, health: 'up' }], 2, 'ok']
  ]
  for (const [name, nodes, count, redundancy] of table) t.same(redundancyOf(nodes), { inSyncReplicas: count, redundancy }, name)
})

t.test('redundancyNotices warns on entry, repeats while it lasts, reports recovery', async (t) => {
  let since = new Map<string, [number, number]>()
  const step = (now: number, groups: Array<{ id: string, redundancy: 'ok' | 'none' | 'unreplicated' }>): string => {
    const r = redundancyNotices(groups, since, now, 30_000)
    since = r.since
    return [...r.warn.map((w) => `warn ${w.group} ${w.forMs}`), ...r.recovered.map((x) => `ok ${x.group} ${x.afterMs}`)].join(', ')
  }
  t.equal(step(0, [{ id: 'g1', redundancy: 'ok' }, { id: 'g2', redundancy: 'unreplicated' }]), '', 'nothing to say')
  t.equal(step(1000, [{ id: 'g1', redundancy: 'none' }]), 'warn g1 0', 'warned on entry')
  t.equal(step(2000, [{ id: 'g1', redundancy: 'none' }]), '', 'not every round')
  t.equal(step(31_000, [{ id: 'g1', redundancy: 'none' }]), 'warn g1 30000', 'repeated while it lasts')
  t.equal(step(32_000, [{ id: 'g1', redundancy: 'none' }]), '', 'then quiet again')
  t.equal(step(40_000, [{ id: 'g1', redundancy: 'ok' }]), 'ok g1 39000', 'recovery reported with how long it lasted')
  t.equal(step(41_000, [{ id: 'g1', redundancy: 'ok' }]), '', 'once')
  t.equal(step(42_000, [{ id: 'g1', redundancy: 'none' }]), 'warn g1 0', 'a new episode')
  t.equal(step(43_000, []), '', 'a group that left the map is forgotten silently')
  t.same([...since], [], 'and not kept')
})
