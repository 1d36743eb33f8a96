import t from 'tap'
import { HotLoad } from '../harness/hot-load'
import { sleep, startCluster, type ClusterNode } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, describeView, keysOwnedBy, nodeView } from '../harness/cluster-view'
import { addGroup, removeGroup, membersOf, waitForRebalance, preload } from '../harness/rebalance'
import { GroupRing } from '../../src/ring/ring'

/**
 * Exactly-once writes across retries (issue 15; DESIGN guarantee 1 and "a request id can
 * never make one write stand in for another"): many clients write the same few hot keys
 * while the router retries writes whose first attempt may have been applied — on a new
 * primary after a failover, or at a key's new owner after the old one applied it and its
 * answer was lost while a rebalance fenced the key (the record of applied request ids must
 * travel with the key: by the migration copy and by the router's copy on touch). The
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
  const c = await startCluster(t, { name: 'exactly-once-failover', groups: 2, replicas: 1, routerArgs: ['--retry-timeout-ms', '12000'] })
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

/** Add-group rounds in subtest b (each new group is removed again before the next is added). */
const NEW_GROUPS = ['g3', 'g4']
/** How long the sources' replicas stay frozen after the fence is on the sources (> the router's 300 ms upstream timeout). */
const HOLD_AFTER_FENCE_MS = 450

t.test('add-group rebalances with writes applied on the source and retried at the new owner: the history stays linearizable', async (t) => {
  // A short upstream timeout makes the router retry (once) a write whose node is slow to
  // answer, and a long retry window lets that retry wait out the map change.
  const c = await startCluster(t, {
    name: 'exactly-once-rebalance',
    groups: 2,
    replicas: 1,
    routerArgs: ['--rebalance-rows-per-sec', '2000', '--upstream-timeout-ms', '300', '--retry-timeout-ms', '12000']
  })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const run = Date.now().toString(36)
  // Hot keys that every add round moves (from g1 or g2) to the new group, so each round
  // hands all of them over.
  const base = membersOf(view)
  const rings = NEW_GROUPS.map((g) => new GroupRing([...base, { id: g, weight: 1 }], view.ring))
  const keyNames: string[] = []
  for (let i = 0; keyNames.length < KEYS; i++) {
    if (i > 200_000) throw new Error('no hot keys that every round moves')
    const key = `eo-rb-${run}/${i}`
    if (rings.every((r, j) => r.ownerOf(key) === NEW_GROUPS[j])) keyNames.push(key)
  }
  // Every round's new node starts up front (not in the map yet), while a filler is loaded.
  const filler = Array.from({ length: 500 }, (_, i) => `eo-fill-${run}/${i}`)
  const [newNodes] = await Promise.all([
    Promise.all(NEW_GROUPS.map(async (g) => await c.addNode(g, g))),
    preload(c.http, c.routerUrl, filler, (k) => `fill|${k}`, 16)
  ])

  const load = new HotLoad({ baseUrl: c.routerUrl, clients: CLIENTS, keys: KEYS, keyNames, durationMs: 90_000, maxOpsPerClient: 8000, requestTimeoutMs: 20_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  const t0 = Date.now()
  const at = (what: string): void => { t.comment(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`) }
  /** performance.now() when each round's replicas resumed (the handover map is published right after). */
  const thawedAt: number[] = []
  try {
    await load.waitForOps(300)
    for (const [round, g] of NEW_GROUPS.entries()) {
      view = await c.waitForView(allReplicasInSync, `round ${round + 1}: every replica in sync`, 30_000)
      const sources = ['g1', 'g2'].map((id) => c.byUrl(primaryUrl(view, id)))
      const replicas = ['g1', 'g2'].map((id) => c.byUrl(replicaUrls(view, id)[0] as string))
      at('in sync')
      const node = newNodes[round] as ClusterNode
      // The sources' replicas stall: writes to the hot keys are applied on their primaries
      // and held there, unanswered, until replicated. The new group is added meanwhile: the
      // fence reaches the primaries at once (the map is published only when the frozen
      // replicas take it too). The router's attempts time out and are retried: refused by
      // the fenced source, then, once the handover map is published, sent to the new owner
      // (copy on touch first), while the source's row — the write applied — is what
      // readers (fallback reads, the copy) see. The request ids must travel with the keys,
      // or the new owner applies those writes a second time, after later writes.
      const frozen = await Promise.all(replicas.map(async (r) => await c.freeze(r)))
      try {
        await sleep(40)
        const added = await addGroup(c.http, c.routerUrl, { id: g, url: node.url, weight: 1 })
        t.equal(added.status, 202, `round ${round + 1}: POST /admin/groups ${g}: ${added.status} ${added.text.slice(0, 200)}`)
        const deadline = Date.now() + 10_000
        while (true) {
          const epochs = await Promise.all(sources.map(async (s) => (await c.health(s)).epoch))
          if (epochs.every((e) => e > view.epoch)) break
          if (Date.now() > deadline) throw new Error(`the sources did not take the fence within 10 s (epochs ${epochs.join(', ')}, map ${view.epoch})`)
          await sleep(10)
        }
        await sleep(HOLD_AFTER_FENCE_MS)
      } finally {
        for (const f of frozen) c.thaw(f.pids)
        thawedAt.push(performance.now())
      }
      at('thawed')
      const seen = new Set<string>()
      const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 60_000, seen, what: `${g} added` })
      t.equal(done.phase, 'done', `round ${round + 1}: ${g} added (phases ${[...seen].join(' -> ')})`)
      at('added')
      await load.waitForOps(load.completedOps() + 200)
      if (round === NEW_GROUPS.length - 1) break
      const removed = await removeGroup(c.http, c.routerUrl, g)
      t.equal(removed.status, 202, `round ${round + 1}: DELETE /admin/groups/${g}: ${removed.status} ${removed.text.slice(0, 200)}`)
      await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.id !== done.id, { timeoutMs: 60_000, what: `${g} removed` })
      at('removed')
      await load.waitForOps(load.completedOps() + 100)
    }
    load.stop()
    await running
    at('load stopped')

    // The router did retry (timeouts at the stalled sources, refusals by their fence). What
    // the retried PUTs answered after each handover is only reported: with the request ids
    // carried over, a retry the source had applied answers with the source's version.
    t.ok(load.counts.retriedByRouter > 0, `the router retried ${load.counts.retriedByRouter} requests`)
    for (const [round, g] of NEW_GROUPS.entries()) {
      const from = thawedAt[round] ?? Infinity
      const retried = load.history.ops.filter((op) => op.kind === 'put' && op.note?.includes('router retried') === true && (op.completeMs ?? 0) > from && (op.completeMs ?? 0) < from + 3000)
      const source = retried.filter((op) => /n-g[12]\./.test(op.etag ?? '')).length
      const target = retried.filter((op) => op.etag?.includes(`n-${g}.`) === true).length
      t.comment(`${g}: retried PUTs answered within 3 s of the handover: ${source} with a version of the source's, ${target} of the new owner's`)
    }
    const report = await load.check()
    t.comment(report.ok ? report.text.split('\n').slice(0, 2).join('\n') : report.text)
    t.equal(report.inconclusiveKeys, 0, `every key decided: ${report.lin.text.split('\n')[0] ?? ''}`)
    t.equal(report.violations, 0, `the history is linearizable: no write applied twice, none lost, no stale read\n${report.text}`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})
