import t from 'tap'
import { Agent } from 'undici'
import { MapSource } from '../../src/client/map-source'
import { initialMap } from '../../src/membership/map'

const RING = { vnodesPerWeight: 64, algorithm: 'md5' as const }

t.test('a map offered with a 421 is adopted only when it is newer and valid', async (t) => {
  const agent = new Agent()
  t.teardown(async () => { await agent.close() })
  // Nothing listens there: offer() must not need the router.
  const maps = new MapSource('http://127.0.0.1:9', agent, 200)
  const base = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }], RING)
  maps.offer(base)
  t.equal(maps.peek()?.epoch, base.epoch, 'the first map is adopted')
  const newer = { ...base, epoch: base.epoch + 2, groups: [...base.groups, { id: 'g2', weight: 1, state: 'active', nodes: [{ url: 'http://127.0.0.1:7002', role: 'primary' }] }] }
  maps.offer(newer)
  t.equal(maps.peek()?.epoch, base.epoch + 2, 'a newer map is adopted')
  maps.offer(base)
  t.equal(maps.peek()?.epoch, base.epoch + 2, 'an older map is ignored')
  maps.offer({ epoch: 99, groups: 'nope' })
  maps.offer('not a map')
  maps.offer(undefined)
  t.equal(maps.peek()?.epoch, base.epoch + 2, 'garbage is ignored')
  t.equal((await maps.refresh(base.epoch)).epoch, base.epoch + 2, 'a caller that saw an older epoch gets the offered map without a fetch')
  t.equal(maps.fetches, 0, 'no /cluster fetch was made')
})

t.test('onChange hears every table that replaces the current one, and nothing else', async (t) => {
  const agent = new Agent()
  t.teardown(async () => { await agent.close() })
  const maps = new MapSource('http://127.0.0.1:9', agent, 200)
  const heard: number[] = []
  maps.onChange((table) => { heard.push(table.epoch) })
  const base = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }], RING)
  maps.offer(base)
  maps.offer(base)
  maps.offer({ ...base, epoch: base.epoch + 1 })
  maps.offer({ ...base, epoch: base.epoch - 1 })
  maps.offer('garbage')
  t.same(heard, [base.epoch, base.epoch + 1], 'the first map and the newer one, once each')
})
