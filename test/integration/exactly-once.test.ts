import t from 'tap'
import { HotLoad } from '../harness/hot-load'
import { sleep } from '../harness/cluster'
import { addGroup, rebalanceProgress, waitForRebalance, preload } from '../harness/rebalance'
import {
  startReplicatedCluster, allReplicasInSync, groupOf, primaryUrl, replicaUrls, describeView, keysOwnedBy, nodeView
} from '../harness/replication'

/**
 * Exactly-once writes across retries (issue 15; DESIGN guarantee 1 and "a request id can
 * never make one write stand in for another"): many clients write the same few hot keys
 * while the router retries writes whose first attempt may have been applied — on a new
 * primary after a failover, or on a node that answered too late during a rebalance. The
 * request id must make every retry answer as its first attempt did, however many other
 * writes reached the key in between. The whole history (invocation and completion times,
 * every answer, a final read of every key) must be linearizable
 * (test/harness/linearizability.ts): a write applied twice erases a later acknowledged
 * write, which no order of the operations explains.
 */

const CLIENTS = 24
const KEYS = 10
/** Failovers in subtest a, each with the stall, the catch-up and the kill. */
const CYCLES = 3
const FREEZE_MS = 400
/** How long after the stalled replica resumes its primary is killed, cycle by cycle. */
const KILL_DELAYS_MS = [3, 10, 25]

t.test('SIGKILL of the primary of the hot keys\' group, writes in flight: the history stays linearizable', async (t) => {
  // A long retry window: writes cut by the kill wait for the new primary (failover ~2-3 s).
  const c = await startReplicatedCluster(t, { name: 'exactly-once-failover', groups: 2, replicas: 1, routerArgs: ['--retry-timeout-ms', '12000'] })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const victim = 'g1'
  const keyNames = keysOwnedBy(view, victim, KEYS, `eo-${Date.now().toString(36)}`)

  const load = new HotLoad({ baseUrl: c.routerUrl, clients: CLIENTS, keys: KEYS, keyNames, durationMs: 120_000, maxOpsPerClient: 8000, requestTimeoutMs: 20_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  try {
    await load.waitForOps(600)
    let opsAtKill = 0
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const term = groupOf(view, victim).term
      const primary = c.byUrl(primaryUrl(view, victim))
      const replica = c.byUrl(replicaUrls(view, victim)[0] as string)
      // The replica stalls, so writes to the group pile up on the primary, committed there
      // and unanswered; then it resumes and catches up, and in the middle of that catch-up
      // (some writes applied on the replica, their answers not yet back to the router) the
      // primary is SIGKILLed. The router retries the cut writes on the promoted replica, in
      // any order with the others' retries and with new writes.
      const pids = await c.pidsOf(primary)
      const stalled = await c.freeze(replica)
      await sleep(FREEZE_MS)
      c.thaw(stalled.pids)
      const delay = KILL_DELAYS_MS[(cycle - 1) % KILL_DELAYS_MS.length] as number
      await sleep(delay)
      const killed = await c.killPids(primary, pids)
      opsAtKill = load.completedOps()
      t.equal(killed.pids.length, 2, `cycle ${cycle}: SIGKILLed ${victim}'s primary (${killed.pids.join(', ')}) ${delay} ms after its stalled replica resumed`)
      view = await c.waitForView((v) => groupOf(v, victim).term > term && primaryUrl(v, victim) === replica.url, `${replica.url} primary of ${victim} after term ${term}`, 30_000)
      t.pass(`cycle ${cycle}: the replica took over: ${describeView(view)}`)
      await load.waitForOps(opsAtKill + 300)
      if (cycle === CYCLES) break
      // The killed node comes back as a replica, for the next cycle.
      await c.restart(primary)
      view = await c.waitForView((v) => nodeView(v, primary.url)?.inSync === true && nodeView(v, primary.url)?.health === 'up', `${primary.url} back in sync`, 40_000)
    }
    await load.waitForOps(opsAtKill + 500)
    load.stop()
    await running
    t.ok(load.completedOps() > opsAtKill, 'the load went on through the failover')

    const report = await load.check()
    t.comment(report.ok ? report.text.split('\n').slice(0, 2).join('\n') : report.text)
    t.equal(report.inconclusiveKeys, 0, `every key decided (size the load so the search ends): ${report.lin.text.split('\n')[0] ?? ''}`)
    t.equal(report.violations, 0, `the history is linearizable: no write applied twice, none lost, no stale read\n${report.text}`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})

t.test('an add-group rebalance with writes retried by the router: the history stays linearizable', async (t) => {
  // A throttled copy keeps the rebalance going for seconds; a short upstream timeout makes
  // the router retry (once) a write whose node is slow to answer — the request id must
  // make that retry harmless even when another write to the key landed in between.
  const c = await startReplicatedCluster(t, {
    name: 'exactly-once-rebalance',
    groups: 2,
    replicas: 0,
    routerArgs: ['--rebalance-rows-per-sec', '1500', '--upstream-timeout-ms', '300', '--retry-timeout-ms', '8000']
  })
  let view = await c.view()
  const run = Date.now().toString(36)
  const filler = Array.from({ length: 4000 }, (_, i) => `eo-fill-${run}/${i}`)
  await preload(c.http, c.routerUrl, filler, (k) => `fill|${k}`, 16)
  const load = new HotLoad({ baseUrl: c.routerUrl, clients: CLIENTS, keys: KEYS, keyPrefix: `eo-rb-${run}`, durationMs: 60_000, maxOpsPerClient: 5000, requestTimeoutMs: 20_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  try {
    await load.waitForOps(300)
    const g3 = await c.addNode('g3', 'g3')
    const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1 })
    t.equal(added.status, 202, `POST /admin/groups g3: ${added.status} ${added.text.slice(0, 200)}`)
    // While keys move, stall each source primary in turn for longer than the upstream
    // timeout: the writes queued on it are retried by the router and then applied late.
    const seen = new Set<string>()
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying' || p.phase === 'done', { timeoutMs: 30_000, seen, what: 'copying' })
    view = await c.view()
    for (const g of ['g1', 'g2']) {
      const p = await rebalanceProgress(c.http, c.routerUrl)
      if (p?.phase !== 'copying') break
      const node = c.byUrl(primaryUrl(view, g))
      const stalled = await c.freeze(node)
      await sleep(450)
      c.thaw(stalled.pids)
      await load.waitForOps(load.completedOps() + 100)
    }
    const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, seen, what: 'phase done' })
    t.equal(done.phase, 'done', `the rebalance finished (phases ${[...seen].join(' -> ')})`)
    await load.waitForOps(load.completedOps() + 300)
    load.stop()
    await running

    const report = await load.check()
    t.comment(report.ok ? report.text.split('\n').slice(0, 2).join('\n') : report.text)
    t.equal(report.inconclusiveKeys, 0, `every key decided: ${report.lin.text.split('\n')[0] ?? ''}`)
    t.equal(report.violations, 0, `the history is linearizable: no write applied twice, none lost, no stale read\n${report.text}`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})
