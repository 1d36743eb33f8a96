import t from 'tap'
import { registeredGroup } from '../../src/registry/registered-group'
import type { WireNodeRegistration } from '../../src/protocol/wire'

const node = (nodeId: string, group: string, url: string, startedAt: string): WireNodeRegistration => ({ nodeId, group, url, pid: 1, startedAt })

const ENTRIES = [
  node('n4b', 'g4', 'http://h2:7004', '2026-12-04T03:00:02.000Z'),
  node('n4a', 'g4', 'http://h1:7004', '2026-12-04T03:00:01.000Z'),
  node('n1', 'g1', 'http://h1:7001', '2026-12-04T02:00:00.000Z'),
  node('n4c', 'g4', 'http://h3:7004', '2026-12-04T03:00:02.000Z')
]

t.test('the nodes registered for a group make it: first started is the primary', async (t) => {
  t.same(registeredGroup(ENTRIES, 'g4'), { ok: true, url: 'http://h1:7004', replicas: ['http://h2:7004', 'http://h3:7004'] })
  t.same(registeredGroup(ENTRIES.slice().reverse(), 'g4'), registeredGroup(ENTRIES, 'g4'), 'the same answer whatever order etcd lists them in')
  t.same(registeredGroup([ENTRIES[0]!, ENTRIES[3]!], 'g4'), { ok: true, url: 'http://h2:7004', replicas: ['http://h3:7004'] }, 'same start time: by node id')
})

t.test('a group nobody registered for is refused with a reason', async (t) => {
  const r = registeredGroup(ENTRIES, 'g9')
  t.equal(r.ok, false)
  t.match(r.ok ? '' : r.why, /no node is registered for group g9/)
})
