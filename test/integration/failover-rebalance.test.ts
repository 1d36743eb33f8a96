import t from 'tap'
import { LoadGenerator, formatStats } from '../harness/history'
import { sleep, startCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, nodeView, replicaCaughtUp, describeView, ringOfView } from '../harness/cluster-view'
import { compareReplica, nodeStats, rawRow } from '../harness/replication'
import { addGroup, admin, waitForRebalance, rebalanceProgress, preload, readAll, pool } from '../harness/rebalance'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * A failover in the middle of a rebalance (DESIGN guarantees 1-3 together): two groups
 * with a replica each serve history-checked load; a third group is added WITH a
 * replica, and the copy is throttled (--rebalance-rows-per-sec) so that it lasts
 * several seconds. While the copy runs, and once the new group's replica is in sync,
 * every process of the new group's primary is SIGKILLed. The replica must take over,
 * the rebalance must carry on against it and finish, nothing acknowledged may be lost,
 * no read may be stale, and every key must end up only on its owner group: each
 * primary holds exactly the live keys the ring gives it (the counts add up to the
 * live keys), no node of another group holds a row of it, and every replica holds
 * what its primary holds.
 */

const PRELOAD = 5000
const ROWS_PER_SEC = 1000

t.test('the new group\'s primary dies while the rebalance copies to it: its replica takes over and the rebalance finishes', async (t) => {
  const c = await startCluster(t, {
    name: 'failover-rebalance',
    groups: 2,
    replicas: 1,
    routerArgs: ['--rebalance-rows-per-sec', String(ROWS_PER_SEC)]
  })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const run = Date.now().toString(36)

  // Enough rows that the throttled scan of both sources lasts several seconds.
  const keys = Array.from({ length: PRELOAD }, (_, i) => `fr-${run}/${i}`)
  const valueOf = (key: string): string => `preloaded|${key}`
  const t0 = Date.now()
  await preload(c.http, c.routerUrl, keys, valueOf, 16)
  t.comment(`preloaded ${PRELOAD} keys through the router in ${Date.now() - t0} ms`)

  const g3 = await c.addNode('g3', 'g3')
  const g3r = await c.addNode('g3', 'g3-r1')
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 6, keysPerClient: 12, durationMs: 150_000, maxOpsPerClient: 8000, requestTimeoutMs: 30_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  try {
    await load.waitForOps(200)
    const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1, replicas: [g3r.url] } as { id: string, url: string, weight: number })
    t.equal(added.status, 202, `POST /admin/groups g3 with a replica: ${added.status} ${added.text.slice(0, 200)}`)

    // Wait for the copy to be under way and the new replica to be in sync (only an in-sync replica may take over).
    const seen = new Set<string>()
    let killView: ClusterView | undefined
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      const p = await rebalanceProgress(c.http, c.routerUrl)
      if (p !== null) seen.add(p.phase)
      if (p !== null && p.phase !== 'fencing' && p.phase !== 'copying') break
      const v = await c.view()
      if (p?.phase === 'copying' && p.scanned > 0 && nodeView(v, g3r.url)?.inSync === true && nodeView(v, g3r.url)?.health === 'up') {
        killView = v
        break
      }
      await sleep(50)
    }
    if (killView === undefined) {
      t.fail(`never saw phase copying with g3's replica in sync (phases seen: ${[...seen].join(', ')}); last: ${describeView(await c.view())}`)
      return
    }
    const before = await rebalanceProgress(c.http, c.routerUrl)
    t.equal(before?.phase, 'copying', `killing g3's primary while copying: ${JSON.stringify(before)}`)
    const killed = await c.killHard(g3)
    t.equal(killed.pids.length, 2, `SIGKILLed g3's primary: supervisor ${killed.pids[0]}, worker ${killed.pids.slice(1).join(', ')}`)

    view = await c.waitForView((v) => groupOf(v, 'g3').term === 2 && primaryUrl(v, 'g3') === g3r.url, 'g3\'s replica primary at term 2', 30_000)
    t.comment(`FAILOVER DURING REBALANCE: g3 term 2 published ${Date.now() - killed.at} ms after the kill: ${describeView(view)}`)
    const mid = await rebalanceProgress(c.http, c.routerUrl)
    t.comment(`rebalance right after the failover: ${JSON.stringify(mid)}`)

    const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, seen, what: 'phase done' })
    t.equal(done.phase, 'done', `the rebalance finished: ${JSON.stringify(done)}`)
    t.ok(seen.has('copying'), `phases seen: ${[...seen].join(' -> ')}`)
    await load.waitForOps(load.completedOps() + 200)
    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    t.comment(`client requests that failed (outcome unknown, checked as such): ${stats.failedRequests}`)
    // Routers re-route a refused copy-on-touch (the new owner failing over) as they re-route a 421 to the write.
    t.same(stats.failures.filter((f) => f.status === 421), [], 'no client saw a 421: misdirection stays inside the router')

    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)

    const { values, errors } = await readAll(c.http, c.routerUrl, keys, 16)
    t.same(errors, [], 'every preloaded key could be read')
    const wrong = keys.filter((k) => values.get(k) !== valueOf(k)).slice(0, 10).map((k) => `${k}: ${JSON.stringify(values.get(k))}`)
    t.same(wrong, [], `all ${PRELOAD} preloaded keys read back unchanged`)

    // Placement: every key only on its owner group, each replica holding what its primary holds.
    view = await c.waitForView((v) => v.handover === undefined && v.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || n.url === g3.url || replicaCaughtUp(v, n.url))),
      'a settled map with every live replica caught up', 30_000)
    const ring = ringOfView(view)
    for (const k of load.checker.trackedKeys()) {
      const res = await c.http.get(c.routerUrl, k)
      values.set(k, res.status === 200 ? res.text() : null)
    }
    const live = [...values].filter(([, v]) => v !== null).map(([k]) => k)
    const expected = new Map<string, number>()
    for (const k of live) expected.set(ring.ownerOf(k) ?? '?', (expected.get(ring.ownerOf(k) ?? '?') ?? 0) + 1)
    let sum = 0
    const perGroup: string[] = []
    for (const g of view.groups) {
      const s = await nodeStats(c.http, primaryUrl(view, g.id))
      sum += s.keys
      perGroup.push(`${g.id}=${s.keys}`)
      t.equal(s.keys, expected.get(g.id) ?? 0, `${g.id}'s primary holds exactly the ${expected.get(g.id) ?? 0} live keys it owns (${JSON.stringify(s)})`)
    }
    t.equal(sum, live.length, `primaries' live keys (${perGroup.join(' ')}) add up to the ${live.length} live keys`)
    t.ok((expected.get('g3') ?? 0) > PRELOAD / 5, `g3 received its share (${expected.get('g3') ?? 0} keys)`)

    const sampleKeys = live.filter((_, i) => i % 25 === 0)
    const misplaced: string[] = []
    await pool(sampleKeys, 8, async (key) => {
      const owner = ring.ownerOf(key)
      for (const g of view.groups) {
        for (const n of g.nodes) {
          if (n.url === g3.url) continue // killed; checked after its restart
          const row = await rawRow(c.http, n.url, key)
          if (g.id === owner && (row === undefined || row.deleted || row.value !== values.get(key))) misplaced.push(`${key}: owner ${g.id} node ${n.url} holds ${JSON.stringify(row)}, the router read ${JSON.stringify(values.get(key))}`)
          if (g.id !== owner && row !== undefined) misplaced.push(`${key}: ${g.id} node ${n.url} (not the owner ${owner ?? '?'}) holds ${JSON.stringify(row)}`)
        }
      }
    })
    t.same(misplaced.slice(0, 20), [], `${sampleKeys.length} sampled keys: a row on every node of the owner group, none anywhere else`)

    for (const g of view.groups) {
      const p = primaryUrl(view, g.id)
      for (const n of g.nodes) {
        if (n.role !== 'replica' || n.url === g3.url) continue
        const cmp = await compareReplica(c.http, p, n.url, [])
        t.equal(cmp.replica.keys, cmp.primary.keys, `${g.id}: replica ${n.url} holds the primary's live keys (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
      }
    }

    // The killed primary returns as a replica of g3 and ends up with g3's data.
    await c.restart(g3)
    view = await c.waitForView((v) => replicaCaughtUp(v, g3.url), 'the old g3 primary back as an in-sync replica', 40_000)
    const h = await c.health(g3)
    t.equal(h.role, 'replica', 'the old g3 primary rejoined as a replica')
    t.equal(h.dataTerm, 2, 'with term-2 data')
    const g3keys = live.filter((k) => ring.ownerOf(k) === 'g3').filter((_, i) => i % 10 === 0)
    const cmp = await compareReplica(c.http, g3r.url, g3.url, g3keys)
    t.equal(cmp.replica.keys, cmp.primary.keys, `g3's rejoined replica holds the primary's live keys (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
    t.same(cmp.mismatches.slice(0, 10), [], `${g3keys.length} sampled g3 keys: the same rows on both g3 nodes`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})

/**
 * A source group's replica that is down while a rebalance purges the moved keys from
 * its group (the rebalancer skips it: "it resyncs when it returns"). Restarted, it
 * must end up with exactly its primary's keys: purges are not in the change log, so a
 * replica that catches up by shipping alone would keep rows of keys its group gave
 * away. Why that matters is checked too: the replica is then promoted, the new group
 * is removed again (its keys move back, copied insert-if-absent), and every value
 * written while the keys lived on the new group must survive.
 */
t.test('a source replica down during the purge ends up with exactly its primary\'s keys, and a later failover and removal lose nothing', async (t) => {
  const c = await startCluster(t, { name: 'replica-purge', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const run = Date.now().toString(36)
  const keys = Array.from({ length: 1500 }, (_, i) => `rp-${run}/${i}`)
  await preload(c.http, c.routerUrl, keys, (k) => `v1|${k}`, 16)
  const g1Primary = c.byUrl(primaryUrl(view, 'g1'))
  const g1Replica = c.byUrl(replicaUrls(view, 'g1')[0] as string)
  await c.killHard(g1Replica)

  const g3 = await c.addNode('g3', 'g3')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1 })
  t.equal(added.status, 202, `g3 added: ${added.text.slice(0, 120)}`)
  const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, what: 'phase done' })
  t.equal(done.phase, 'done', `rebalance done while g1's replica was down: ${JSON.stringify(done)}`)

  await c.restart(g1Replica)
  view = await c.waitForView((v) => replicaCaughtUp(v, g1Replica.url), 'g1\'s replica back in sync with lag 0', 60_000)
  const cmp = await compareReplica(c.http, g1Primary.url, g1Replica.url, [])
  t.equal(cmp.replica.keys, cmp.primary.keys, `g1's replica holds exactly its primary's live keys after catching up (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
  const ring = ringOfView(view)
  const moved = keys.filter((k) => ring.ownerOf(k) === 'g3')
  const leftover: string[] = []
  for (const k of moved.filter((_, i) => i % 10 === 0)) {
    const row = await rawRow(c.http, g1Replica.url, k)
    if (row !== undefined) leftover.push(k)
  }
  t.same(leftover.slice(0, 5), [], `g1's replica holds no row of the ${moved.length} keys that moved to g3 (sampled ${Math.ceil(moved.length / 10)}; ${leftover.length} still there)`)

  // The consequence: overwrite the moved keys (now on g3), fail g1 over to that replica, remove g3.
  await preload(c.http, c.routerUrl, moved, (k) => `v2|${k}`, 16)
  await c.killHard(g1Primary)
  view = await c.waitForView((v) => groupOf(v, 'g1').term === 2 && primaryUrl(v, 'g1') === g1Replica.url, 'g1\'s replica promoted', 30_000)
  const removed = await admin(c.http, 'DELETE', `${c.routerUrl}/admin/groups/g3`)
  t.equal(removed.status, 202, `g3 removed: ${removed.text.slice(0, 120)}`)
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'remove', { timeoutMs: 120_000, what: 'the removal done' })
  const { values, errors } = await readAll(c.http, c.routerUrl, moved, 16)
  t.same(errors, [], 'every moved key could be read')
  const lost = moved.filter((k) => values.get(k) !== `v2|${k}`)
  t.same(lost.slice(0, 5).map((k) => `${k}: ${JSON.stringify(values.get(k))}`), [], `all ${moved.length} values written while the keys lived on g3 survive its removal (${lost.length} went back to an older value)`)
})
