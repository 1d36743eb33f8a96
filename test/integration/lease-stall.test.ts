import t, { type Test } from 'tap'
import { LoadGenerator } from '../harness/history'
import { finishLoad } from '../harness/load-check'
import { isAlive, sleep, startCluster, waitFor, type TestCluster } from '../harness/cluster'
import { allReplicasInSync, keysOwnedBy, primaryUrl } from '../harness/cluster-view'
import { directRequest } from '../harness/replication'

/**
 * Stalls on a busy machine, against the failover decision (src/replication/policy.ts
 * leaseStep): a replica is promoted only once the primary failed a renewal AND the last
 * lease it may hold has ended. Neither a primary paused for a moment nor a coordinator
 * that renews late may cost the group its primary, and nothing acknowledged is lost
 * either way (history-checked load through the router throughout).
 *
 *  - A primary frozen (SIGSTOP) past its first missed renewal, then continued: the
 *    renewals it missed may have arrived (timeouts), so its lease holds in the
 *    coordinator's count; it answers again before that count ends and stays primary.
 *    (Promoting it away on a missed renewal, before its lease ended, fails here.)
 *  - The coordinator frozen until a primary's lease has run out (the primary refuses
 *    with lease_expired), then continued: it renews the leases it granted late and
 *    fails nobody over — the primaries never stopped answering.
 */

const LEASE_MS = 800 // the default (src/config/options.ts): the freeze below is sized on it

async function startLoaded (t: Test, name: string): Promise<{ c: TestCluster, load: LoadGenerator }> {
  const c = await startCluster(t, { name, groups: 2, replicas: 1 })
  await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 6, keysPerClient: 10, durationMs: 90_000, maxOpsPerClient: 20_000, requestTimeoutMs: 20_000 })
  t.teardown(async () => { await load.close() })
  void load.run() // finishLoad waits for it
  await load.waitForOps(200)
  return { c, load }
}

async function termsStayOne (t: Test, c: TestCluster): Promise<void> {
  const view = await c.view()
  t.same(view.groups.map((g) => [g.id, g.term]), [['g1', 1], ['g2', 1]], 'no group failed over: every primary kept its role')
}

t.test('a primary frozen past a missed renewal but within its lease is not failed over', async (t) => {
  const { c, load } = await startLoaded(t, 'lease-stall-primary')
  const view = await c.view()
  const primary = c.byUrl(primaryUrl(view, 'g1'))
  const missed = c.coordinator.waitForEvent((e) => e.event === 'lease-failed' && e.group === 'g1', 30_000)
  const frozen = await c.freeze(primary)
  await missed
  const missedAt = Date.now()
  // Past the next round's renewal and its time-out too (a renewal interval each, a
  // quarter lease): a coordinator that promoted on missed renewals would have done it by
  // now; one that waits for the lease sees the primary answer first.
  await sleep(LEASE_MS * 5 / 8)
  c.thaw(frozen.pids)
  t.comment(`g1's primary frozen ${Date.now() - frozen.at} ms (${Date.now() - missedAt} ms past its first missed renewal)`)
  const ops = load.completedOps()
  await load.waitForOps(ops + 300)
  await termsStayOne(t, c)
  await finishLoad(t, load)
})

t.test('a coordinator frozen past a primary\'s lease renews it when continued: no failover', async (t) => {
  const { c, load } = await startLoaded(t, 'lease-stall-coordinator')
  const view = await c.view()
  const primary = primaryUrl(view, 'g1')
  const [probeKey] = keysOwnedBy(view, 'g1', 1, `stall-probe-${Date.now().toString(36)}`)
  const pid = c.coordinator.pid
  t.teardown(() => { if (isAlive(pid)) process.kill(pid, 'SIGCONT') })
  process.kill(pid, 'SIGSTOP')
  const frozenAt = Date.now()
  // The lease the frozen coordinator granted last runs out: the primary refuses (421 lease_expired).
  await waitFor(async () => {
    const res = await directRequest(c.http, primary, 'GET', probeKey as string, view.epoch, undefined, 2000)
    return !(res instanceof Error) && res.status === 421 && res.text().includes('lease_expired')
  }, 20_000, 'g1\'s primary refuses once its lease ran out')
  const lapsedAfter = Date.now() - frozenAt
  process.kill(pid, 'SIGCONT')
  t.comment(`coordinator frozen ${Date.now() - frozenAt} ms; g1's primary refused (lease over) ${lapsedAfter} ms after the freeze`)
  // Served again: the continued coordinator renewed the lease.
  await waitFor(async () => {
    const res = await directRequest(c.http, primary, 'GET', probeKey as string, view.epoch, undefined, 2000)
    return !(res instanceof Error) && res.status === 404
  }, 20_000, 'g1\'s primary serves again')
  const ops = load.completedOps()
  await load.waitForOps(ops + 300)
  await termsStayOne(t, c)
  await finishLoad(t, load)
})
