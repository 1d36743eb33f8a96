import t from 'tap'
import { startCluster } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'
import {
  checkPlacement, clusterView, keyRange, nodeStats, preload, primaryOf, readAll, removeGroup, ringOf, waitForRebalance, PHASE_ORDER
} from '../harness/rebalance'

/**
 * Draining one of four groups while clients keep working (DESIGN: Rebalancing;
 * Guarantees 1-4): no acknowledged write is lost, no read is stale, no client request
 * fails; afterwards the removed group is gone from the map, its node holds no live
 * key and refuses every key, and every key lives on its owner only.
 */

t.test('remove one of 4 groups under load: no lost write, no stale read, the drained node ends empty', async (t) => {
  const c = await startCluster(t, {
    name: 'rb-remove',
    groups: 4,
    workers: 1,
    routerArgs: ['--rebalance-rows-per-sec', '800', '--rebalance-batch', '100']
  })

  const preloaded = keyRange('remove/pre', 4000)
  const preValue = (k: string): string => `v0:${k}`
  await preload(c.http, c.routerUrl, preloaded, preValue)
  const before = await clusterView(c.http, c.routerUrl)
  t.equal(before.groups.length, 4, 'four groups to start with')
  const victim = 'g2'
  const victimUrl = primaryOf(before, victim)
  const victimKeysBefore = (await nodeStats(c.http, victimUrl)).keys
  const ringBefore = ringOf(before)
  t.equal(victimKeysBefore, preloaded.filter((k) => ringBefore.ownerOf(k) === victim).length, `${victim} holds its ${victimKeysBefore} preloaded keys`)

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 60, durationMs: 90_000, maxOpsPerClient: 50_000 }, c.http)
  const running = load.run()
  await load.waitForOps(400)

  const opsAtStart = load.completedOps()
  const removed = await removeGroup(c.http, c.routerUrl, victim)
  t.equal(removed.status, 202, `DELETE /admin/groups/${victim} answers 202: ${removed.text.slice(0, 300)}`)
  t.match(removed.body, { rebalance: { kind: 'remove', group: victim } }, 'the answer describes the rebalance')

  const seen = new Set<string>()
  const mid = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase !== 'fencing', { seen, what: 'a phase after fencing', timeoutMs: 30_000 })
  if (mid.phase === 'copying') {
    const during = await clusterView(c.http, c.routerUrl)
    t.equal(during.groups.find((g) => g.id === victim)?.state, 'draining', `${victim} shows as draining while its keys move`)
  }
  const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { seen, what: 'done', timeoutMs: 90_000 })
  const opsAtDone = load.completedOps()
  await new Promise((resolve) => setTimeout(resolve, 500))
  load.stop()
  const stats = await running
  t.comment(`phases seen: ${PHASE_ORDER.filter((p) => seen.has(p)).join(' -> ')}; progress at done: ${JSON.stringify(done)}`)
  t.comment(`load: ${formatStats(stats)}`)
  t.ok(opsAtDone - opsAtStart >= 200, `the load ran throughout the rebalance (${opsAtDone - opsAtStart} ops between DELETE and done)`)
  t.ok(seen.has('finishing') || seen.has('purging') || seen.has('copying'), 'an intermediate phase was observed under load')
  t.ok(done.copied >= victimKeysBefore * 0.5, `the drained group's rows were copied (${done.copied}; it held ${victimKeysBefore} before the load)`)

  t.equal(stats.failedRequests, 0, `no client request failed during the removal: ${formatStats(stats)}`)
  const report = await load.verify()
  t.equal(report.staleReads.length, 0, `no stale read during the removal\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
  t.ok(report.ok, `history checks out: ${JSON.stringify(report.counts)}\n${report.text}`)

  const after = await clusterView(c.http, c.routerUrl)
  t.equal(after.epoch, before.epoch + 3, `the removal published exactly three maps (handover, settled, without ${victim}): epoch ${before.epoch} -> ${after.epoch}`)
  t.same(after.groups.map((g) => g.id).sort(), ['g1', 'g3', 'g4'], `${victim} is no longer in /cluster`)
  t.ok(after.groups.every((g) => g.state === 'active'), 'the remaining groups are active')
  t.notOk(after.groups.some((g) => g.nodes.some((n) => n.url === victimUrl)), `${victimUrl} is no longer in /cluster`)

  const drained = await nodeStats(c.http, victimUrl)
  t.equal(drained.keys, 0, `the drained node holds no live key (stats: ${JSON.stringify(drained)})`)
  t.equal(drained.tombstones, 0, 'nor any tombstone')

  const all = [...preloaded, ...load.checker.trackedKeys()]
  const { values, errors } = await readAll(c.http, c.routerUrl, all)
  t.same(errors, [], 'every key could be read back')
  const wrongPre = preloaded.filter((k) => values.get(k) !== preValue(k))
  t.same(wrongPre.slice(0, 10), [], `every preloaded key still holds its value (${wrongPre.length} do not)`)
  await checkPlacement(t, c.http, after, values, { retiredNodes: [victimUrl] })

  // Keys of the other groups did not move: only the drained group gave keys away.
  const ringAfter = ringOf(after)
  const movedElsewhere = preloaded.filter((k) => ringBefore.ownerOf(k) !== victim && ringBefore.ownerOf(k) !== ringAfter.ownerOf(k))
  t.equal(movedElsewhere.length, 0, 'no key of a remaining group changed owner')
})
