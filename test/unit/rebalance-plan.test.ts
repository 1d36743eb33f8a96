import t, { type Test } from 'tap'
import { initialMap, type ClusterMap } from '../../src/membership/map'
import { Ownership, currentMembers } from '../../src/membership/ownership'
import {
  planAdd, planRemove, nextPhase, phaseMap, progressOf, sourcesOf, RebalanceError, type RebalanceState
} from '../../src/membership/rebalance'
import { GroupRing } from '../../src/ring/ring'

const RING = { vnodesPerWeight: 256, algorithm: 'md5' as const }

function threeGroups (): ClusterMap {
  return initialMap([
    { id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 },
    { id: 'g2', url: 'http://127.0.0.1:7002', weight: 1 },
    { id: 'g3', url: 'http://127.0.0.1:7003', weight: 1 }
  ], RING)
}

function code (t: Test, fn: () => unknown, expected: RebalanceError['code']): void {
  try {
    fn()
    t.fail(`expected RebalanceError ${expected}`)
  } catch (err) {
    t.ok(err instanceof RebalanceError, 'a RebalanceError')
    t.equal((err as RebalanceError).code, expected)
  }
}

/** Runs a plan's phases against a map, as the coordinator would, returning every map published. */
function walk (state: RebalanceState, start: ClusterMap): ClusterMap[] {
  const maps = [start]
  let current = start
  let s = state
  while (s.phase !== 'done') {
    const next = phaseMap(s, current)
    if (next !== current) {
      maps.push(next)
      current = next
    }
    t.equal(phaseMap(s, current), current, `phase ${s.phase} is idempotent once applied`)
    s = { ...s, phase: nextPhase(s) }
  }
  return maps
}

const keys = Array.from({ length: 20_000 }, (_, i) => `user:${i}`)

t.test('planAdd: sources, then epochs, handover and settled maps', async (t) => {
  const before = threeGroups()
  const plan = planAdd(before, { id: 'g4', url: 'http://127.0.0.1:7004', weight: 1 })
  t.equal(plan.phase, 'fencing')
  t.same(Object.keys(plan.sources).sort(), ['g1', 'g2', 'g3'], 'adding a group can take keys from every group')
  const [, handover, settled, ...rest] = walk(plan, before)
  t.equal(rest.length, 0, 'an add publishes two maps')
  t.equal(handover?.epoch, before.epoch + 1)
  t.same(handover?.handover?.previous, currentMembers(before), 'the handover map remembers the previous ring')
  t.equal(settled?.epoch, before.epoch + 2)
  t.equal(settled?.handover, undefined, 'the settled map has no handover')
})

t.test('ownership through an add: each key has exactly one writer in every map', async (t) => {
  const before = threeGroups()
  const plan = planAdd(before, { id: 'g4', url: 'http://127.0.0.1:7004', weight: 1 })
  const [, handover, settled] = walk(plan, before) as [ClusterMap, ClusterMap, ClusterMap]
  for (const map of [before, handover, settled]) {
    const views = map.groups.map((g) => new Ownership(map, g.id))
    let bad = 0
    for (const k of keys) {
      if (views.filter((v) => v.access(k) === 'owned').length !== 1) bad++
    }
    t.equal(bad, 0, `epoch ${map.epoch}: one owner per key`)
  }
  const oldRing = new GroupRing(currentMembers(before), RING)
  const newRing = new GroupRing(currentMembers(handover), RING)
  const handoverView = new Map(handover.groups.map((g) => [g.id, new Ownership(handover, g.id)]))
  const settledView = new Map(settled.groups.map((g) => [g.id, new Ownership(settled, g.id)]))
  let moved = 0
  let wrongAccess = 0
  for (const k of keys) {
    const from = oldRing.ownerOf(k) as string
    const to = newRing.ownerOf(k) as string
    if (from === to) continue
    moved++
    if (to !== 'g4') wrongAccess++
    if (handoverView.get(from)?.access(k) !== 'handover') wrongAccess++
    if (settledView.get(from)?.access(k) !== 'foreign') wrongAccess++
  }
  t.equal(wrongAccess, 0, 'moving keys go only to the new group; the old owner hands over, then holds them as foreign')
  const share = moved / keys.length
  t.ok(share > 0.2 && share < 0.3, `about a quarter of the keys move (${share.toFixed(3)})`)
})

t.test('planRemove: the drained group is the only source; the final map drops it', async (t) => {
  const before = threeGroups()
  const plan = planRemove(before, 'g2')
  t.same(Object.keys(plan.sources), ['g2'])
  const [, handover, settled, final] = walk(plan, before) as [ClusterMap, ClusterMap, ClusterMap, ClusterMap]
  t.equal(handover.groups.find((g) => g.id === 'g2')?.state, 'draining')
  t.equal(final.epoch, before.epoch + 3)
  t.notOk(final.groups.some((g) => g.id === 'g2'), 'the final map no longer lists g2')
  const drained = new Ownership(handover, 'g2')
  const settledView = new Ownership(settled, 'g2')
  t.notOk(keys.some((k) => drained.access(k) === 'owned'), 'a draining group owns nothing')
  t.ok(keys.every((k) => settledView.access(k) === 'foreign'), 'after settling every key on g2 is foreign (purged)')
})

t.test('phase maps are derived from the current map, so a failover in between is kept', async (t) => {
  const before = threeGroups()
  const plan = planAdd(before, { id: 'g4', url: 'http://127.0.0.1:7004', weight: 1, replicas: ['http://127.0.0.1:7104'] })
  const handover = phaseMap(plan, before)
  t.same(handover.groups.find((g) => g.id === 'g4')?.nodes, [
    { url: 'http://127.0.0.1:7004', role: 'primary' },
    { url: 'http://127.0.0.1:7104', role: 'replica', inSync: false }
  ], 'replicas join out of sync')
  // A failover bumps g1's term and epoch while the copy runs.
  const failedOver: ClusterMap = { ...handover, epoch: handover.epoch + 1, groups: handover.groups.map((g) => g.id === 'g1' ? { ...g, term: 2 } : g) }
  const settled = phaseMap({ ...plan, phase: 'settling' }, failedOver)
  t.equal(settled.epoch, failedOver.epoch + 1)
  t.equal(settled.groups.find((g) => g.id === 'g1')?.term, 2, 'the settled map keeps the new term')
})

t.test('refusals are typed', async (t) => {
  const before = threeGroups()
  code(t, () => planAdd(before, { id: 'g1', url: 'http://127.0.0.1:7009', weight: 1 }), 'group_exists')
  code(t, () => planAdd(before, { id: 'g9', url: 'http://127.0.0.1:7001', weight: 1 }), 'group_exists')
  code(t, () => planAdd(before, { id: 'bad id', url: 'http://127.0.0.1:7009', weight: 1 }), 'invalid_request')
  code(t, () => planRemove(before, 'nope'), 'no_such_group')
  const single = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }], RING)
  code(t, () => planRemove(single, 'g1'), 'last_group')
  const running = planAdd(before, { id: 'g4', url: 'http://127.0.0.1:7004', weight: 1 })
  code(t, () => planAdd(phaseMap(running, before), { id: 'g5', url: 'http://127.0.0.1:7005', weight: 1 }), 'rebalance_running')
})

t.test('sourcesOf', async (t) => {
  const a = { id: 'a', weight: 1 }
  const b = { id: 'b', weight: 1 }
  const c = { id: 'c', weight: 1 }
  t.same(sourcesOf([a, b], [a, b, c]), ['a', 'b'])
  t.same(sourcesOf([a, b, c], [a, c]), ['b'])
  t.same(sourcesOf([a, b], [a, { id: 'b', weight: 2 }]), ['a', 'b'], 'growing a weight takes from every group')
})

t.test('progressOf', async (t) => {
  const s = planAdd(threeGroups(), { id: 'g4', url: 'http://127.0.0.1:7004', weight: 1 }, new Date('2026-01-01T00:00:00Z'))
  s.phase = 'copying'
  s.estimatedRows = 1000
  s.sources.g1 = { cursor: 10, done: false, scanned: 250, copied: 60 }
  const p = progressOf(s, new Date('2026-01-01T00:00:05Z'))
  t.equal(p.scanned, 250)
  t.equal(p.copied, 60)
  t.equal(p.keysPerSecond, 50)
  t.equal(p.percent, 25)
  t.equal(p.etaSeconds, 15)
})
