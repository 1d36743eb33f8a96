import t, { type Test } from 'tap'
import { etcdAvailable } from '../harness/etcd'
import { isAlive, leadingCoordinator, startCluster, waitFor } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'
import { ClientLoad } from '../harness/client-load'
import { createClient } from '../../src/client'
import { addGroup, clusterView, keyRange, killHard, preload, removeGroup, startGroupNode, waitForRebalance, PHASE_ORDER } from '../harness/rebalance'

/**
 * The control plane on etcd (DESIGN: the coordinator): two coordinators campaign for one
 * leader key, two routers follow the map in etcd, and a direct client follows it through
 * a router. SIGKILL the leading coordinator in the middle of a rebalance under load: the
 * standby must take over within a few seconds, resume the rebalance from what etcd holds,
 * and finish it, while no client sees anything (the data plane routes by the map it
 * has), and every history checks out.
 */

const SLOW = ['--rebalance-rows-per-sec', '700', '--rebalance-batch', '100']

/**
 * History-checked loads through two routers (LoadGenerator) and a direct-mode client
 * (ClientLoad), on disjoint keys; `reader` reads the direct client's keys back, routed.
 */
function threeLoads (t: Test, r1: string, r2: string, prefix: string, o: { keys: number, directKeys: number, durationMs: number }) {
  const options = { clients: 4, keysPerClient: o.keys, durationMs: o.durationMs, maxOpsPerClient: 50_000 }
  const viaR1 = new LoadGenerator({ ...options, baseUrl: r1, keyPrefix: `${prefix}-r1` })
  const viaR2 = new LoadGenerator({ ...options, baseUrl: r2, keyPrefix: `${prefix}-r2` })
  const kv = createClient({ url: r1, mode: 'direct' })
  const reader = createClient({ url: r2, mode: 'routed' })
  t.teardown(async () => { await Promise.all([kv.close(), reader.close()]) })
  const direct = new ClientLoad(kv, { ...options, keysPerClient: o.directKeys, keyPrefix: `${prefix}-direct` })
  const running = Promise.all([viaR1.run(), viaR2.run(), direct.run()])
  return { viaR1, viaR2, direct, reader, running }
}

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('leading coordinator SIGKILLed mid-rebalance: a standby takes over and finishes; two routers and a direct client see nothing', async (t) => {
    const c = await startCluster(t, { name: 'cp-etcd', groups: 3, workers: 1, etcdMembers: 3, coordinators: 2, routers: 2, routerArgs: SLOW })
    const [r1, r2] = c.routers
    if (r1 === undefined || r2 === undefined) throw new Error('two routers expected')
    await preload(c.http, r1.url, keyRange('cp/pre', 3000), (k) => `v0:${k}`)

    const { viaR1, viaR2, direct, reader, running } = threeLoads(t, r1.url, r2.url, 'cp', { keys: 40, directKeys: 30, durationMs: 150_000 })
    await Promise.all([viaR1.waitForOps(200), viaR2.waitForOps(200), direct.waitForOps(200)])

    const leader = await leadingCoordinator(c)
    const before = await clusterView(c.http, r1.url)
    const g4 = await startGroupNode(c, 'g4')
    // Through the second router: it relays to whoever holds the leader key.
    const added = await addGroup(c.http, r2.url, { id: 'g4', url: g4.url })
    t.equal(added.status, 202, `add accepted through router 2: ${added.text.slice(0, 200)}`)
    const atKill = await waitForRebalance(c.http, r1.url, (p) => p.phase === 'copying' && p.scanned >= 300, { what: 'copying with rows scanned', timeoutMs: 60_000 })
    const epochAtKill = (await clusterView(c.http, r1.url)).epoch

    const killedAt = Date.now()
    await killHard(leader)
    t.comment(`SIGKILLed the leading coordinator ${leader.name} (pid ${leader.pid}) at ${JSON.stringify(atKill)}`)
    const next = await leadingCoordinator(c, 30_000)
    const ledAfterMs = Date.now() - killedAt
    t.not(next.pid, leader.pid, `${next.name} leads ${ledAfterMs} ms after the kill`)
    await waitFor(async () => {
      const v = await clusterView(c.http, r1.url).catch(() => undefined)
      return v !== undefined && v.epoch > epochAtKill
    }, 60_000, 'the next map change after the kill')
    const changedAfterMs = Date.now() - killedAt
    t.comment(`from the SIGKILL: a new leader after ${ledAfterMs} ms, the next map change published after ${changedAfterMs} ms`)

    const seen = new Set<string>()
    const done = await waitForRebalance(c.http, r2.url, (p) => p.phase === 'done', { seen, what: 'done after the takeover', timeoutMs: 120_000 })
    t.equal(done.id, atKill.id, 'the new leader finished the same rebalance')
    t.ok(done.scanned >= atKill.scanned, `the copy went on from where it was (scanned ${atKill.scanned} at the kill, ${done.scanned} at done)`)
    t.comment(`phases after the takeover: ${PHASE_ORDER.filter((p) => seen.has(p)).join(' -> ')}`)
    await Promise.all([viaR1.waitForOps(viaR1.completedOps() + 200), direct.waitForOps(direct.ops + 100)])
    viaR1.stop()
    viaR2.stop()
    direct.stop()
    const [s1, s2] = await running
    t.comment(`router 1: ${formatStats(s1)}; router 2: ${formatStats(s2)}; direct: ${direct.summary()}`)
    t.same(s1.failures, [], 'no request through router 1 failed')
    t.same(s2.failures, [], 'no request through router 2 failed')
    t.equal(direct.failed, 0, `no direct client call failed: ${direct.summary()}`)

    for (const [name, report] of [['router 1', await viaR1.verify()], ['router 2', await viaR2.verify()], ['direct client', await direct.verify(reader)]] as const) {
      t.equal(report.staleReads.length, 0, `${name}: no stale read\n${report.text}`)
      t.equal(report.lostWrites.length, 0, `${name}: every key reads back its last acknowledged state\n${report.text}`)
      t.ok(report.ok, `${name}: history checks out\n${report.text}`)
    }
    const after = await clusterView(c.http, r1.url)
    t.ok(after.groups.some((g) => g.id === 'g4' && g.state === 'active'), 'g4 is active')
    t.ok(after.epoch > before.epoch, `the map moved on (epoch ${before.epoch} -> ${after.epoch})`)
    for (const r of [r1, r2]) {
      await waitFor(async () => (await c.http.getJson<{ epoch: number }>(`${r.url}/healthz`)).epoch === after.epoch, 10_000, `${r.name} routes by epoch ${after.epoch}`)
    }
    t.pass('both routers route by the final map')
  })

  t.test('etcd loses one member, then two mid-rebalance: clients see nothing; admin calls fail with a 503 saying why; no coordinator exits; the rebalance finishes once etcd has a quorum', async (t) => {
    // The add's copy is slowed (120 rows/s of ~660, more as the load rewrites keys) so that etcd loses its quorum while it runs.
    const c = await startCluster(t, { name: 'cp-etcd-quorum', groups: 2, workers: 1, etcdMembers: 3, coordinators: 2, routers: 1, routerArgs: ['--rebalance-rows-per-sec', '120', '--rebalance-batch', '20'] })
    const etcd = c.etcd
    if (etcd === undefined) throw new Error('an etcd cluster expected')
    await preload(c.http, c.routerUrl, keyRange('q/pre', 500), (k) => `v0:${k}`)
    const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 4, keysPerClient: 40, durationMs: 240_000, maxOpsPerClient: 100_000, keyPrefix: 'quorum' })
    const running = load.run()
    await load.waitForOps(200)

    await etcd.kill(2)
    const g3 = await startGroupNode(c, 'g3')
    // A 503 here means no coordinator answered (one may be taking over on a busy machine) and the
    // add may or may not have applied: read the view before asking again, as the answer says.
    const added = await waitFor(async () => {
      if ((await clusterView(c.http, c.routerUrl).catch(() => undefined))?.groups.some((g) => g.id === 'g3') === true) return 'in the map'
      const r = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url })
      return r.status === 202 ? 'accepted' : r.status === 503 ? undefined : `refused: ${r.status} ${r.text.slice(0, 160)}`
    }, 60_000, 'the add of g3 accepted')
    t.match(added, /^(accepted|in the map)$/, `with one etcd member of three down, a group is added (${added})`)
    const copying = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying' && p.scanned > 0, { what: 'the add copying', timeoutMs: 60_000 })

    await etcd.kill(1)
    // No quorum: the leader cannot renew its key and stops acting on its own clock.
    await waitFor(async () => {
      const leads = await Promise.all(c.coordinators.map(async (p) => (await c.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined))?.leader === true))
      return !leads.some(Boolean)
    }, 30_000, 'no coordinator leads without an etcd quorum')
    const lostAt = Date.now()
    const opsAtLoss = load.completedOps()
    const refused = await removeGroup(c.http, c.routerUrl, 'g3')
    t.equal(refused.status, 503, `an admin call without a leading coordinator is a 503: ${refused.text.slice(0, 200)}`)
    t.match(String(refused.body?.message), /coordinator/, 'and the message says no coordinator answered or leads')
    await load.waitForOps(opsAtLoss + 300)
    t.pass(`the data plane served ${load.completedOps() - opsAtLoss} operations without an etcd quorum`)

    await Promise.all([etcd.restart(1), etcd.restart(2)])
    // A leader that could not renew its key (nor save the rebalance's progress) dropped its
    // term and stands by again, in-process.
    t.ok(c.coordinators.every((p) => isAlive(p.pid)), 'no coordinator exited: a deposed leader stands by again')
    const leader = await leadingCoordinator(c, 60_000)
    t.pass(`${leader.name} leads again once etcd has a quorum`)
    const addDone = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'add', { what: 'the add resumed and done', timeoutMs: 120_000 })
    const finishedAt = Date.parse(addDone.finishedAt ?? '')
    t.ok(finishedAt > lostAt, `the quorum was lost mid-rebalance (copying at ${copying.scanned} rows then; finished ${finishedAt - lostAt} ms after no coordinator led)`)
    t.ok(c.coordinators.every((p) => isAlive(p.pid)), 'and no coordinator exited since')
    const removed = await waitFor(async () => {
      const r = await removeGroup(c.http, c.routerUrl, 'g3')
      return r.status === 202 ? r : undefined
    }, 30_000, 'the remove accepted through the router')
    t.equal(removed.status, 202, 'the map can change again')
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'remove', { what: 'the remove done', timeoutMs: 60_000 })
    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    t.same(stats.failures, [], 'no client request failed at any point')
    const report = await load.verify()
    t.ok(report.ok, `history checks out\n${report.text}`)
  })

  // The same failover with the file registry (one coordinator, one router), for the failover time beside it.
  for (const registry of ['etcd', 'file'] as const) {
    t.test(`a primary SIGKILLed (${registry} registry): the coordinator fails over; the routers and a direct client keep every acknowledged write`, async (t) => {
      const c = await startCluster(t, { name: `cp-${registry}-failover`, groups: 2, replicas: 1, workers: 1, ...(registry === 'etcd' ? { etcdMembers: 1, coordinators: 2, routers: 2 } : {}) })
      const r1 = c.routers[0]
      const r2 = c.routers[1] ?? r1
      if (r1 === undefined || r2 === undefined) throw new Error('a router expected')
      const victim = c.primaries[0]
      const heir = c.replicas.find((r) => r.group === victim?.group)
      if (victim === undefined || heir === undefined) throw new Error('g1 with a replica expected')
      const primaryOfG1 = async (): Promise<{ url?: string, term?: number, inSync?: boolean }> => {
        const g = (await clusterView(c.http, r2.url).catch(() => undefined))?.groups.find((x) => x.id === victim.group)
        return { url: g?.nodes.find((n) => n.role === 'primary')?.url, term: g?.term, inSync: g?.nodes.find((n) => n.role === 'replica')?.inSync }
      }
      await waitFor(async () => (await primaryOfG1()).inSync === true, 30_000, 'g1\'s replica in sync')

      const { viaR1, viaR2, direct, reader, running } = threeLoads(t, r1.url, r2.url, 'fo', { keys: 30, directKeys: 20, durationMs: 120_000 })
      await Promise.all([viaR1.waitForOps(200), viaR2.waitForOps(200), direct.waitForOps(200)])

      const killedAt = Date.now()
      await c.killHard(victim)
      await waitFor(async () => (await primaryOfG1()).url === heir.url, 60_000, `${heir.url} primary of g1`)
      const tookMs = Date.now() - killedAt
      t.comment(`failover (${registry} registry): ${heir.url} primary of g1 ${tookMs} ms after the SIGKILL (term ${(await primaryOfG1()).term ?? '?'})`)
      await Promise.all([viaR1.waitForOps(viaR1.completedOps() + 300), viaR2.waitForOps(viaR2.completedOps() + 300), direct.waitForOps(direct.ops + 200)])
      viaR1.stop()
      viaR2.stop()
      direct.stop()
      const [s1, s2] = await running
      t.comment(`router 1: ${formatStats(s1)}; router 2: ${formatStats(s2)}; direct: ${direct.summary()}`)
      for (const [name, report] of [['router 1', await viaR1.verify()], ['router 2', await viaR2.verify()], ['direct client', await direct.verify(reader)]] as const) {
        t.equal(report.lostWrites.length, 0, `${name}: every key reads back its last acknowledged state\n${report.text}`)
        t.equal(report.staleReads.length, 0, `${name}: no stale read\n${report.text}`)
        t.ok(report.ok, `${name}: history checks out\n${report.text}`)
      }
    })
  }
}
