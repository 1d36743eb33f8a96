import t from 'tap'
import { startCluster } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'
import {
  addGroup, checkPlacement, clusterView, keyRange, nodeStats, preload, readAll, ringOf, startGroupNode, waitForRebalance, PHASE_ORDER
} from '../harness/rebalance'
import { GroupRing } from '../../src/ring/ring'

/**
 * Adding a group while clients keep working (DESIGN: Rebalancing; Guarantees 1-4):
 * no acknowledged write is lost, no read is stale, no client request fails, and
 * afterwards every key lives on its owner only. Then, on 20k keys, adding a 4th
 * group of equal weight moves about a quarter of the keys and nothing else.
 */

t.test('add a 4th group under load: no lost write, no stale read, every key only on its owner', async (t) => {
  const c = await startCluster(t, {
    name: 'rb-add',
    groups: 3,
    workers: 1,
    // Slow enough that the load overlaps every phase of the rebalance.
    routerArgs: ['--rebalance-rows-per-sec', '2000', '--rebalance-batch', '200']
  })

  const preloaded = keyRange('add/pre', 4000)
  const preValue = (k: string): string => `v0:${k}`
  await preload(c.http, c.routerUrl, preloaded, preValue)
  const before = await clusterView(c.http, c.routerUrl)
  t.equal(before.groups.length, 3, 'three groups to start with')

  const g4 = await startGroupNode(c, 'g4')
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 60, durationMs: 90_000, maxOpsPerClient: 50_000 }, c.http)
  const running = load.run()
  await load.waitForOps(400)

  const opsAtStart = load.completedOps()
  const added = await addGroup(c.http, c.routerUrl, { id: 'g4', url: g4.url, weight: 1 })
  t.equal(added.status, 202, `POST /admin/groups answers 202: ${added.text.slice(0, 300)}`)
  t.match(added.body, { rebalance: { kind: 'add', group: 'g4' } }, 'the answer describes the rebalance')

  const seen = new Set<string>()
  const handoverSeen = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase !== 'fencing', { seen, what: 'a phase after fencing', timeoutMs: 30_000 })
  const during = await clusterView(c.http, c.routerUrl)
  if (handoverSeen.phase === 'copying') {
    t.ok(during.rebalance !== undefined && during.rebalance !== null, 'GET /cluster shows the rebalance while it runs')
    t.ok(during.handover !== undefined || during.rebalance?.phase !== 'copying', 'GET /cluster shows the handover while copying')
  }
  let phases = 0
  const done = await waitForRebalance(c.http, c.routerUrl, (p) => {
    phases++
    return p.phase === 'done'
  }, { seen, what: 'done', timeoutMs: 90_000 })
  const opsAtDone = load.completedOps()
  await new Promise((resolve) => setTimeout(resolve, 500))
  load.stop()
  const stats = await running
  t.comment(`phases seen: ${PHASE_ORDER.filter((p) => seen.has(p)).join(' -> ')} (${phases} polls); progress at done: ${JSON.stringify(done)}`)
  t.comment(`load: ${formatStats(stats)}`)
  t.ok(opsAtDone - opsAtStart >= 200, `the load ran throughout the rebalance (${opsAtDone - opsAtStart} ops between POST and done)`)
  t.ok(seen.has('copying') || seen.has('settling') || seen.has('purging'), 'an intermediate phase was observed under load')
  t.equal(done.percent, 100, 'done is 100%')
  t.ok(done.copied > 0, `rows were copied (${done.copied})`)

  t.equal(stats.failedRequests, 0, `no client request failed during the add: ${formatStats(stats)}`)
  const report = await load.verify()
  t.equal(report.staleReads.length, 0, `no stale read during the add\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
  t.ok(report.ok, `history checks out: ${JSON.stringify(report.counts)}\n${report.text}`)

  const after = await clusterView(c.http, c.routerUrl)
  t.equal(after.epoch, before.epoch + 2, `the add published exactly two maps (handover, settled): epoch ${before.epoch} -> ${after.epoch}`)
  t.same(after.groups.map((g) => [g.id, g.state]).sort(), [['g1', 'active'], ['g2', 'active'], ['g3', 'active'], ['g4', 'active']], 'g4 is an active group')
  t.equal(after.handover, undefined, 'no handover left in /cluster')

  const all = [...preloaded, ...load.checker.trackedKeys()]
  const { values, errors } = await readAll(c.http, c.routerUrl, all)
  t.same(errors, [], 'every key could be read back')
  const wrongPre = preloaded.filter((k) => values.get(k) !== preValue(k))
  t.same(wrongPre.slice(0, 10), [], `every preloaded key still holds its value (${wrongPre.length} do not)`)
  await checkPlacement(t, c.http, after, values)
})

t.test('20k keys: adding a 4th group of equal weight moves 20-30% of them, all to the new group', async (t) => {
  const c = await startCluster(t, { name: 'rb-move', groups: 3, workers: 1, routerArgs: ['--rebalance-rows-per-sec', '0', '--rebalance-batch', '1000'] })
  const N = 20_000
  const keys = keyRange('move', N)
  await preload(c.http, c.routerUrl, keys, (k) => `m:${k}`, 24)
  const before = await clusterView(c.http, c.routerUrl)
  const statsBefore = new Map<string, number>()
  for (const g of before.groups) statsBefore.set(g.id, (await nodeStats(c.http, g.nodes[0]!.url)).keys)
  t.equal([...statsBefore.values()].reduce((a, b) => a + b, 0), N, `the three groups hold the ${N} keys`)

  const g4 = await startGroupNode(c, 'g4')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g4', url: g4.url, weight: 1 })
  t.equal(added.status, 202, `add accepted: ${added.text.slice(0, 200)}`)
  t.equal(added.body?.rebalance?.estimatedRows, N, 'the progress estimate counts every source row')
  const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 120_000 })
  t.comment(`progress at done: ${JSON.stringify(done)}`)

  const moved = (await nodeStats(c.http, g4.url)).keys
  const share = moved / N
  t.ok(share >= 0.2 && share <= 0.3, `g4 holds ${moved} keys = ${(share * 100).toFixed(1)}% of ${N} (want 20-30%)`)
  t.equal(done.copied, moved, 'copied count equals the keys g4 holds (nothing was written meanwhile)')
  t.equal(done.deleted, moved, 'the sources purged exactly the moved rows')
  t.equal(done.scanned, N, 'every source row was scanned once')

  // Minimal movement: a key changes owner only if its new owner is g4.
  const after = await clusterView(c.http, c.routerUrl)
  const oldRing = ringOf(before)
  const newRing = new GroupRing([...oldRing.members, { id: 'g4', weight: 1 }], before.ring)
  const betweenOld = keys.filter((k) => oldRing.ownerOf(k) !== newRing.ownerOf(k) && newRing.ownerOf(k) !== 'g4')
  t.equal(betweenOld.length, 0, 'the ring moves no key between the old groups')
  for (const g of before.groups) {
    const now = (await nodeStats(c.http, g.nodes[0]!.url)).keys
    const lost = keys.filter((k) => oldRing.ownerOf(k) === g.id && newRing.ownerOf(k) === 'g4').length
    t.equal(now, (statsBefore.get(g.id) ?? 0) - lost, `${g.id}: ${statsBefore.get(g.id) ?? 0} -> ${now} keys (gave ${lost} to g4, kept the rest)`)
  }
  const { values, errors } = await readAll(c.http, c.routerUrl, keys, 24)
  t.same(errors, [], 'every key could be read back')
  const wrong = keys.filter((k) => values.get(k) !== `m:${k}`)
  t.same(wrong.slice(0, 10), [], `every key still holds its value (${wrong.length} do not)`)
  await checkPlacement(t, c.http, after, values, { sampleSize: 100 })
})
