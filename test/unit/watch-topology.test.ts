import t from 'tap'
import { planTopology, Topology, unseenGroupChanges, type MapGroup } from '../../router/watch-topology'
import { decodeCursor, decodeEventValue, encodeCursor, encodeEventValue, type WatchCursor } from '../../src/protocol/watch'
import { wantsValues } from '../../router/watch-routes'
import { eventData } from '../../router/watch-stream'

const active = (id: string): MapGroup => ({ id, state: 'active' })
const draining = (id: string): MapGroup => ({ id, state: 'draining' })

t.test('the roles of a round: read, retire, done, admit; a gap is named, never taken', async (t) => {
  const at = { t: 1, s: 10 }
  const done = { t: 1, s: 10, d: 1 as const }
  const cases: Array<[string, MapGroup[], WatchCursor, Record<string, string> | RegExp, string[]?]> = [
    ['every group known', [active('g1'), active('g2')], { g1: at, g2: at }, { g1: 'read', g2: 'read' }],
    ['a draining group not yet delivered to its end', [active('g1'), draining('g3')], { g1: at, g3: at }, { g1: 'read', g3: 'retire' }],
    ['a draining group delivered to its end', [active('g1'), draining('g3')], { g1: at, g3: done }, { g1: 'read', g3: 'done' }],
    ['a removed group delivered to its end is forgotten', [active('g1')], { g1: at, g3: done }, { g1: 'read' }, ['g3']],
    ['a group new to the cursor', [active('g1'), active('g3')], { g1: at }, { g1: 'read', g3: 'admit' }],
    ['a new group under the id of one that left', [active('g1'), active('g3')], { g1: at, g3: done }, { g1: 'read', g3: 'admit' }],
    ['a removed group not delivered to its end', [active('g1')], { g1: at, g3: at }, /g3 left the cluster before this stream delivered/],
    ['a group that joined and is leaving since the cursor', [active('g1'), draining('g3')], { g1: at }, /g3 joined and began leaving/],
    ['two groups new to the cursor', [active('g1'), active('g3'), active('g4')], { g1: at }, /more than one added group/]
  ]
  for (const [what, groups, cursor, want, forget] of cases) {
    const plan = planTopology(groups, cursor)
    if (want instanceof RegExp) t.match(plan.lost, want, what)
    else {
      t.equal(plan.lost, undefined, `${what}: no gap`)
      t.same(Object.fromEntries(plan.roles), want, what)
      t.same(plan.forget, forget ?? [], `${what}: forgets ${JSON.stringify(forget ?? [])}`)
    }
  }
})

t.test('a draining group is done once delivered to its position as read after it began draining, in that term', async (t) => {
  const topo = new Topology()
  const cursor: WatchCursor = { g1: { t: 1, s: 5 }, g3: { t: 1, s: 100 } }
  const plan = planTopology([active('g1'), draining('g3')], cursor)
  topo.begin(plan)
  t.ok(topo.retire(cursor, plan.roles), 'no barrier read yet: still retiring')
  topo.observe('g3', { term: 1, stored: 300 })
  cursor.g3 = { t: 1, s: 250 }
  t.ok(topo.retire(cursor, plan.roles), 'delivered to 250 of 300')
  topo.observe('g3', { term: 2, stored: 280 })
  cursor.g3 = { t: 2, s: 280 }
  t.notOk(topo.retire(cursor, plan.roles), 'a failover retook the barrier (280, the new primary\'s log), reached')
  t.same(cursor.g3, { t: 2, s: 280, d: 1 }, 'the cursor marks it done')
  t.same(decodeCursor(encodeCursor(cursor)), cursor, 'and the mark travels in the opaque cursor')
  const next = planTopology([active('g1')], cursor)
  t.same(next.forget, ['g3'], 'so it may leave the map')
})

t.test('a new group is read only after every other group passed a barrier read after it appeared', async (t) => {
  const topo = new Topology()
  const cursor: WatchCursor = { g1: { t: 1, s: 5 }, g2: { t: 1, s: 7 } }
  const groups = [active('g1'), active('g2'), active('g3')]
  topo.begin(planTopology(groups, cursor))
  t.equal(topo.admitted(cursor), undefined, 'no barriers yet')
  topo.observe('g1', { term: 1, stored: 50 })
  topo.observe('g2', { term: 1, stored: 70 })
  cursor.g1 = { t: 1, s: 50 }
  cursor.g2 = { t: 1, s: 60 }
  t.equal(topo.admitted(cursor), undefined, 'g2 delivered to 60 of 70')
  topo.begin(planTopology(groups, cursor))
  topo.observe('g2', { term: 1, stored: 90 })
  cursor.g2 = { t: 1, s: 70 }
  t.equal(topo.admitted(cursor), 'g3', 'the barrier is the first read\'s (70), not a later one\'s')
})

t.test('values in events: text stays text, anything else base64; the flag is 0 or 1', async (t) => {
  const cases: Array<[Buffer, string, string]> = [
    [Buffer.from('héllo'), 'text/plain; charset=utf-8', 'utf8'],
    [Buffer.from('{"a":1}'), 'application/json', 'utf8'],
    [Buffer.from('<a/>'), 'application/atom+xml', 'utf8'],
    [Buffer.from([0xff, 0xfe, 0x00]), 'text/plain', 'base64'],
    [Buffer.from('plain bytes'), 'application/octet-stream', 'base64'],
    [Buffer.alloc(0), 'text/plain', 'utf8']
  ]
  for (const [bytes, type, encoding] of cases) {
    const v = encodeEventValue(bytes, type)
    t.equal(v.encoding, encoding, `${type}: ${encoding}`)
    t.same(decodeEventValue(v.value, v.encoding), bytes, `${type}: round trip`)
  }
  t.same(eventData('g1', { seq: 3, key: 'k', op: 'put', etag: '"e"', contentType: 'text/plain', value: Buffer.from('hi').toString('base64') }),
    { key: 'k', etag: '"e"', group: 'g1', contentType: 'text/plain', value: 'hi', encoding: 'utf8' })
  t.same(eventData('g1', { seq: 3, key: 'k', op: 'put', etag: '"e"', contentType: 'text/plain', valueOmitted: 'superseded' }),
    { key: 'k', etag: '"e"', group: 'g1', contentType: 'text/plain', valueOmitted: 'superseded' })
  t.equal(wantsValues(undefined), false)
  t.equal(wantsValues('0'), false)
  t.equal(wantsValues('1'), true)
  for (const bad of ['yes', '', ['1', '1']]) t.throws(() => wantsValues(bad), { code: 'invalid_request' }, `values=${JSON.stringify(bad)}`)
})

t.test('groups that came and went while a cursor was away are not silence', async (t) => {
  const cases: Array<[string, { groups: string[], membership: number | undefined }, { groups: string[], membership: number }, boolean]> = [
    ['nothing changed', { groups: ['g1', 'g2'], membership: 3 }, { groups: ['g1', 'g2'], membership: 3 }, false],
    ['one add, seen as a new group', { groups: ['g1', 'g2'], membership: 3 }, { groups: ['g1', 'g2', 'g3'], membership: 4 }, false],
    ['one remove, seen as a group gone', { groups: ['g1', 'g2', 'g3'], membership: 4 }, { groups: ['g1', 'g2'], membership: 5 }, false],
    ['an add and a remove of another group, both seen', { groups: ['g1', 'g2'], membership: 3 }, { groups: ['g1', 'g3'], membership: 5 }, false],
    ['g3 added and removed again while away', { groups: ['g1', 'g2'], membership: 3 }, { groups: ['g1', 'g2'], membership: 5 }, true],
    ['g2 removed and its id reused while away', { groups: ['g1', 'g2'], membership: 3 }, { groups: ['g1', 'g2'], membership: 5 }, true],
    ['a join the cursor already counted but had not admitted', { groups: ['g1', 'g2'], membership: 4 }, { groups: ['g1', 'g2', 'g4'], membership: 4 }, false],
    ['that group gone again before it was admitted', { groups: ['g1', 'g2'], membership: 4 }, { groups: ['g1', 'g2'], membership: 5 }, true],
    ['a cursor from before counting', { groups: ['g1'], membership: undefined }, { groups: ['g1'], membership: 9 }, false],
    ['a count that went backwards', { groups: ['g1'], membership: 9 }, { groups: ['g1'], membership: 2 }, true]
  ]
  for (const [what, seen, now, lost] of cases) t.equal(unseenGroupChanges(seen, now) !== undefined, lost, what)
})
