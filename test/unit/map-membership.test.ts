import t from 'tap'
import { initialMap, validateMap, withMembership, type ClusterMap } from '../../src/membership/map'

const RING = { vnodesPerWeight: 64, algorithm: 'md5' as const }
const group = (id: string): ClusterMap['groups'][number] => ({ id, weight: 1, state: 'active', nodes: [{ url: `http://127.0.0.1:7${id.slice(1).padStart(3, '0')}`, role: 'primary' }] })

t.test('the membership count moves by the groups that joined or left', async (t) => {
  const m0 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }], RING)
  t.equal(m0.membership, undefined, 'the seeded map counts from 0')
  const added = withMembership(m0, { ...m0, epoch: m0.epoch + 1, groups: [...m0.groups, group('g2')] })
  t.equal(added.membership, 1, 'a group joined: 1')
  const failedOver = withMembership(added, { ...added, epoch: added.epoch + 1, groups: added.groups.map((g) => ({ ...g, term: 2 })) })
  t.equal(failedOver.membership, 1, 'a failover changes no group: unchanged')
  const swapped = withMembership(failedOver, { ...failedOver, epoch: failedOver.epoch + 1, groups: [group('g1'), group('g3')] })
  t.equal(swapped.membership, 3, 'g2 left and g3 joined in one step: 2 more')
  t.equal(validateMap(swapped).membership, 3, 'it is part of a valid map')
  t.throws(() => validateMap({ ...swapped, membership: -1 }), /membership/, 'a negative count is refused')
  t.throws(() => validateMap({ ...swapped, membership: 1.5 }), /membership/, 'so is a fraction')
})
