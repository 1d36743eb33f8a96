import t from 'tap'
import { startCluster, sleep } from '../harness/cluster'
import { allReplicasInSync } from '../harness/cluster-view'
import { addGroup, clusterView, keyRange, preload, removeGroup, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { ClientLoad } from '../harness/client-load'
import { createClient } from '../../src/client'
import { RoutingTable } from '../../src/membership/routing-table'
import { validateMap } from '../../src/membership/map'

/**
 * Direct mode across the two events that change where keys live (DESIGN guarantees 1
 * and 2): a group added under load (keys move; moving keys go through the router; the
 * nodes' 421s make the client refresh its map) and a primary SIGKILLed under load (the
 * client's connections fail; it refreshes until the promoted replica is in the map).
 * In both, concurrent direct-mode clients are history-checked: every key reads back
 * its latest acknowledged value, and no read is stale.
 */

t.test('direct mode across an add-shard: no lost write, no stale read, traffic goes to the nodes', async (t) => {
  const c = await startCluster(t, {
    name: 'client-add',
    groups: 3,
    workers: 1,
    // Slow enough that the load overlaps every phase of the rebalance.
    routerArgs: ['--rebalance-rows-per-sec', '2000', '--rebalance-batch', '200']
  })
  await preload(c.http, c.routerUrl, keyRange('cadd/pre', 3000), (k) => `v0:${k}`)

  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  const reader = createClient({ url: c.routerUrl, mode: 'routed' })
  t.teardown(async () => { await kv.close(); await reader.close() })
  const load = new ClientLoad(kv, { clients: 8, keysPerClient: 40, durationMs: 90_000, maxOpsPerClient: 50_000 })
  const running = load.run()
  const before = kv.stats()
  await load.waitForOps(300)
  const epochBefore = kv.stats().epoch

  const g4 = await startGroupNode(c, 'g4')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g4', url: g4.url, weight: 1 })
  t.equal(added.status, 202, `add accepted: ${added.text.slice(0, 200)}`)
  const seen = new Set<string>()
  const opsAtAdd = load.ops
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { seen, what: 'done', timeoutMs: 90_000 })
  const opsAtDone = load.ops
  await load.waitForOps(load.ops + 300)
  load.stop()
  await running
  t.comment(`phases seen: ${[...seen].join(', ')}; load: ${load.summary()}`)
  t.ok(opsAtDone - opsAtAdd >= 100, `the load ran through the rebalance (${opsAtDone - opsAtAdd} ops)`)
  t.equal(load.failed, 0, `no client call failed: ${load.summary()}`)

  const report = await load.verify(reader)
  t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
  t.ok(report.ok, `history: ${report.text}`)

  const after = await clusterView(c.http, c.routerUrl)
  const stats = kv.stats()
  t.comment(`direct client: ${JSON.stringify(stats)} (before the load: ${JSON.stringify(before)})`)
  t.equal(stats.epoch, after.epoch, `the client follows the map to epoch ${after.epoch} (from ${String(epochBefore)})`)
  t.ok(stats.mapFetches >= 2 && stats.mapFetches < load.ops / 4, `it refreshed the map a few times, not per request (${stats.mapFetches} fetches)`)
  const toRouter = stats.requests[c.routerUrl] ?? 0
  const toNodes = Object.entries(stats.requests).filter(([u]) => u !== c.routerUrl).reduce((n, [, v]) => n + v, 0)
  t.ok(toNodes > 2 * toRouter, `most requests went straight to the nodes: ${toNodes} to nodes, ${toRouter} to the router (moving keys)`)
  t.ok(toRouter > 0, 'keys moving during the handover went through the router')
  t.ok((stats.requests[g4.url] ?? 0) > 0, `the new group's node got requests directly (${stats.requests[g4.url] ?? 0})`)
})

t.test('direct mode across a failover: writes succeed again, nothing acknowledged is lost', async (t) => {
  const c = await startCluster(t, { name: 'client-failover', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const raw = await c.box.http.getJson(`${c.routerUrl}/cluster`)
  const table = new RoutingTable(validateMap(raw))
  const victim = 'g1'
  const oldPrimary = c.byUrl(view.groups.find((g) => g.id === victim)!.nodes.find((n) => n.role === 'primary')!.url)
  const replicaUrl = view.groups.find((g) => g.id === victim)!.nodes.find((n) => n.role === 'replica')!.url

  const kv = createClient({ url: c.routerUrl, mode: 'direct', retryTimeoutMs: 8000 })
  const reader = createClient({ url: c.routerUrl, mode: 'routed' })
  t.teardown(async () => { await kv.close(); await reader.close() })
  const keys = keyRange(`cfo-${Date.now().toString(36)}`, 96)
  const victimKeys = keys.filter((k) => table.groupOf(k) === victim)
  t.ok(victimKeys.length > 20, `${victimKeys.length} of the load's keys belong to ${victim}`)
  const load = new ClientLoad(kv, { clients: 8, keysPerClient: 0, keys, durationMs: 90_000, maxOpsPerClient: 50_000 })
  const running = load.run()
  try {
    await load.waitForOps(300)
    await c.killHard(oldPrimary)
    // Answers the dead node sent just before it died are handled within this pause; every
    // write acknowledged after it was acknowledged by another node.
    await sleep(200)
    const killedAt = load.elapsed()
    const opsAtKill = load.ops
    view = await c.waitForView((v) => v.groups.find((g) => g.id === victim)!.nodes.some((n) => n.role === 'primary' && n.url === replicaUrl), `${replicaUrl} promoted`, 30_000)
    t.pass(`the replica took over (epoch ${view.epoch})`)
    // Writes to the victim group are acknowledged again, through the same client.
    const firstAfter = await (async () => {
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline) {
        const hit = load.ackTimes.find((a) => a.at > killedAt && victimKeys.includes(a.key))
        if (hit !== undefined) return hit
        await sleep(50)
      }
      return undefined
    })()
    t.ok(firstAfter !== undefined, `a write to ${victim} was acknowledged ${firstAfter === undefined ? '?' : firstAfter.at - killedAt} ms after the kill`)
    await load.waitForOps(load.ops + 400)
    load.stop()
    await running
    t.comment(`load: ${load.summary()}`)
    t.ok(load.ops > opsAtKill + 300, 'the load went on after the failover')
    t.comment(`calls that failed across the failover: ${load.failed} (a call gives up after retryTimeoutMs = 8 s)`)
    t.ok(load.failed <= 8, `at most one failed call per client (${load.failed})`)

    const report = await load.verify(reader)
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}`)

    const stats = kv.stats()
    t.comment(`direct client: ${JSON.stringify(stats)}`)
    t.equal(stats.requests[c.routerUrl] ?? 0, 0, 'no data request went through the router (no rebalance)')
    t.ok((stats.requests[replicaUrl] ?? 0) > 50, `the promoted node got requests directly (${stats.requests[replicaUrl] ?? 0})`)
    t.ok(stats.mapFetches >= 2, `the client refreshed its map (${stats.mapFetches} fetches)`)
    t.equal(stats.epoch, view.epoch, 'and routes by the map that names the new primary')
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})

t.test('direct mode across a remove-shard: keys follow the drain, and the removed node\'s pool is closed', async (t) => {
  const c = await startCluster(t, { name: 'client-remove', groups: 3, workers: 1 })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  const reader = createClient({ url: c.routerUrl, mode: 'routed' })
  t.teardown(async () => { await kv.close(); await reader.close() })
  const load = new ClientLoad(kv, { clients: 4, keysPerClient: 40, durationMs: 60_000, maxOpsPerClient: 50_000 })
  const running = load.run()
  try {
    await load.waitForOps(300)
    const view = await clusterView(c.http, c.routerUrl)
    const leaving = view.groups.find((g) => g.id === 'g2')!.nodes[0]!.url
    t.ok(kv.stats().openPools.includes(leaving), `the client talks to g2 directly (${leaving})`)
    const removing = await removeGroup(c.http, c.routerUrl, 'g2')
    t.equal(removing.status, 202, `remove accepted: ${removing.text.slice(0, 200)}`)
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'the drain of g2', timeoutMs: 60_000 })
    const settled = await clusterView(c.http, c.routerUrl)
    // The client learns the settled map from a 421 or its handover poll; give it some traffic to do so.
    const deadline = Date.now() + 20_000
    while (kv.stats().epoch !== settled.epoch && Date.now() < deadline) await sleep(50)
    await load.waitForOps(load.ops + 200)
    load.stop()
    await running
    t.comment(`load: ${load.summary()}`)
    t.equal(load.failed, 0, 'no call failed across the drain')
    const stats = kv.stats()
    t.equal(stats.epoch, settled.epoch, `the client follows the map to epoch ${settled.epoch}`)
    t.notOk(stats.openPools.includes(leaving), `the removed node's pool is closed (open: ${stats.openPools.join(', ')})`)
    t.ok(stats.openPools.length >= 1 && stats.openPools.length <= 2, 'the pools of the remaining primaries stay open')

    const report = await load.verify(reader)
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})
