import t from 'tap'
import { readiness } from '../../shards/readyz'
import type { ClusterMap } from '../../src/membership/map'
import { ruleOf } from '../../src/auth/client-guard'

// The Kubernetes readiness probe's rule (shards/readyz.ts): primary, or replica in the in-sync set.
const map = {
  epoch: 3,
  ring: { vnodes: 16, hash: 'md5' },
  groups: [{
    id: 'g1',
    weight: 1,
    state: 'active',
    term: 2,
    nodes: [
      { url: 'http://g1-0.g1:7001', role: 'primary' },
      { url: 'http://g1-1.g1:7001', role: 'replica', inSync: true },
      { url: 'http://g1-2.g1:7001', role: 'replica', inSync: false }
    ]
  }]
} as unknown as ClusterMap

const cases: Array<[string, Parameters<typeof readiness>[0], boolean]> = [
  ['no map installed', undefined, false],
  ['a map that does not name this node', { group: 'g1', map }, false],
  ['the primary', { group: 'g1', self: 'http://g1-0.g1:7001', map }, true],
  ['an in-sync replica', { group: 'g1', self: 'http://g1-1.g1:7001', map }, true],
  ['a replica catching up', { group: 'g1', self: 'http://g1-2.g1:7001', map }, false],
  ['a node its group no longer lists', { group: 'g1', self: 'http://g1-9.g1:7001', map }, false],
  ['a group the map does not have', { group: 'g7', self: 'http://g1-0.g1:7001', map }, false]
]
for (const [what, record, ready] of cases) {
  t.test(what, async (t) => {
    const r = readiness(record)
    t.equal(r.ready, ready, r.reason)
    t.ok(r.reason.length > 0, 'says why')
  })
}

t.test('the kubelet probes /readyz without a token', async (t) => {
  t.equal(ruleOf('/readyz'), 'open')
})
