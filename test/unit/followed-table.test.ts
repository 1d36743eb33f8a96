import t from 'tap'
import { FollowedTable } from '../../router/map-follower'
import { initialMap, type ClusterMap } from '../../src/membership/map'

/** The router's retries wake on a new map (router/forward.ts RetryPace): FollowedTable.onceChanged. */

function mapAt (epoch: number): ClusterMap {
  return { ...initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }]), epoch }
}

t.test('onceChanged calls its listener once, on the next newer map only; cancel stops it', async (t) => {
  const held = new FollowedTable()
  const calls: string[] = []
  held.onceChanged(() => calls.push('a'))
  const cancel = held.onceChanged(() => calls.push('cancelled'))
  cancel()
  t.ok(held.offer(mapAt(2)), 'a newer map is adopted')
  t.same(calls, ['a'], 'the listener ran; the cancelled one did not')
  held.onceChanged(() => calls.push('b'))
  t.notOk(held.offer(mapAt(2)), 'the same epoch again is not adopted')
  t.notOk(held.offer(mapAt(1)), 'nor an older one')
  t.same(calls, ['a'], 'so nobody is woken')
  held.offer(mapAt(3))
  held.offer(mapAt(4))
  t.same(calls, ['a', 'b'], 'once: a listener does not outlive the change it waited for')
})
