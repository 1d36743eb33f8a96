import t from 'tap'
import { LoadGenerator, HistoryChecker } from '../harness/history'
import { startCluster, waitFor, type TestCluster, type ClusterNode } from '../harness/cluster'
import { allReplicasInSync, groupOf, nodeView, primaryUrl, replicaUrls, replicaCaughtUp, describeView, keysOwnedBy } from '../harness/cluster-view'
import { ackedBurst, startBurst, verifyKeys, compareReplica } from '../harness/replication'
import { finishLoad } from '../harness/load-check'
import { METRIC_PREFIX } from '../../src/protocol/wire'

/**
 * The pipelined replication stream (shards/shipper.ts, src/replication/ship-window.ts)
 * under SIGKILL while several shipments are in flight (guarantees 1 and 2).
 *
 * The replica is stalled (SIGSTOP) under concurrent writes until the primary's
 * `shard_replication_in_flight` gauge shows more than one shipment in flight to it —
 * shipments written on the socket, none answered — then:
 *  1. the replica is SIGKILLed with them in flight: the primary lets them fail, has the
 *     replica dropped, goes on without it; restarted, the replica catches up from where
 *     it stands (it never applies a shipment that does not continue its position);
 *  2. once it is in sync again, it is stalled again the same way and the PRIMARY is
 *     SIGKILLed with the window full; the replica resumes and is promoted.
 * No write acknowledged while the replica was stalled (the primary may count only what a
 * replica answered), no acknowledged write lost, no stale read.
 */

const INFLIGHT = `${METRIC_PREFIX}shard_replication_in_flight`

async function metric (c: TestCluster, node: ClusterNode, name: string): Promise<number> {
  const text = (await c.http.request('GET', `${node.realUrl}/metrics`, { timeoutMs: 5000 })).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.slice(name.length + 1))
}

type Burst = ReturnType<typeof startBurst>

/**
 * Polls the primary until more than one shipment is in flight (the replica stalled):
 * the count seen. Writers blocked on the stalled replica make no new commits, and one
 * commit is one shipment, so every second without a full window another burst of
 * fresh keys goes out — on a busy machine the first burst may land in a single commit.
 */
async function windowFilled (c: TestCluster, primary: ClusterNode, feed: () => void): Promise<number> {
  let fedAt = Date.now()
  return await waitFor(async () => {
    const n = await metric(c, primary, INFLIGHT).catch(() => 0)
    if (n >= 2) return n
    if (Date.now() - fedAt >= 1000) { feed(); fedAt = Date.now() }
    return undefined
  }, 30_000, 'two or more shipments in flight to the stalled replica')
}

/** Bursts on fresh slices of `keys` (tracked by `probe`), each slice written once. */
function feeder (c: TestCluster, keys: readonly string[], probe: HistoryChecker, tag: string): { feed: () => void, acked: () => number, done: () => Promise<unknown> } {
  const bursts: Burst[] = []
  let next = 0
  return {
    feed: () => {
      if (next >= keys.length) return
      bursts.push(startBurst(c.http, c.routerUrl, keys.slice(next, next + 4), probe, `${tag}-${next}`))
      next += 4
    },
    acked: () => bursts.reduce((n, b) => n + b.acked(), 0),
    done: async () => await Promise.all(bursts.map(async (b) => await b.done))
  }
}

t.test('SIGKILL of a replica, then of the primary, with several shipments in flight: nothing acknowledged is lost', async (t) => {
  // A longer replica timeout than the default, so that a stall on a loaded machine does not
  // get the replica dropped before the kill (the primary would then ack without it).
  // The router sends every turn's writes at once (--coalesce-in-flight 0): with its default window of one batch
  // per primary, every write would wait behind the first batch the stalled replica blocks, the primary would
  // make one commit, and one commit is one shipment; this test needs several in flight.
  const c = await startCluster(t, { name: 'inflight-kill', groups: 1, replicas: 1, shardArgs: ['--replica-timeout-ms', '5000', '--ack-timeout-ms', '15000', '--replication-window', '4'], routerArgs: ['--coalesce-in-flight', '0'] })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 60_000)
  const group = 'g1'
  const primary = c.byUrl(primaryUrl(view, group))
  const replica = c.byUrl(replicaUrls(view, group)[0] as string)
  const probe = new HistoryChecker()
  const probeKeys = keysOwnedBy(view, group, 16, `inflight-${Date.now().toString(36)}`)
  const feedKeys = keysOwnedBy(view, group, 96, `inflight-feed-${Date.now().toString(36)}`)
  for (const k of [...probeKeys, ...feedKeys]) probe.track(k)

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 12, keysPerClient: 10, durationMs: 150_000, maxOpsPerClient: 6000, requestTimeoutMs: 30_000 })
  t.teardown(async () => { load.stop(); await load.run().catch(() => undefined); await load.close() })
  void load.run()
  await load.waitForOps(300)

  // 1. The replica, stalled with the window filling, SIGKILLed.
  await ackedBurst(c.http, c.routerUrl, probeKeys, probe, 'before-replica-kill')
  const stalled = await c.freeze(replica)
  const burst1 = startBurst(c.http, c.routerUrl, probeKeys, probe, 'replica-stalled')
  const fed1 = feeder(c, feedKeys.slice(0, 48), probe, 'replica-stalled-feed')
  const inFlight1 = await windowFilled(c, primary, fed1.feed)
  const acked1 = burst1.acked() + fed1.acked()
  const killedReplica = await c.killPids(replica, stalled.pids)
  c.thaw(stalled.pids)
  t.ok(inFlight1 >= 2, `${inFlight1} shipments were in flight to the replica when it was SIGKILLed`)
  t.equal(acked1, 0, 'no write was acknowledged while the in-sync replica could not answer')
  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === false, `${replica.url} dropped from the in-sync set`, 30_000)
  t.pass(`the primary had the replica dropped ${Date.now() - killedReplica.at} ms after the kill: ${describeView(view)}`)
  t.comment(`writes stalled by the kill: ${JSON.stringify((await burst1.done).map((r) => r.status))}`)
  await fed1.done()
  await ackedBurst(c.http, c.routerUrl, probeKeys, probe, 'replica-down')

  await c.restart(replica)
  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === true && nodeView(v, replica.url)?.health === 'up', `${replica.url} in sync again (under load)`, 60_000)
  t.equal(groupOf(view, group).term, 1, 'no failover for a replica\'s death')
  await load.waitForOps(load.completedOps() + 200)

  // 2. The primary, SIGKILLed with the window to its stalled replica full.
  const pids = await c.pidsOf(primary)
  await ackedBurst(c.http, c.routerUrl, probeKeys, probe, 'before-primary-kill')
  const stalled2 = await c.freeze(replica)
  const burst2 = startBurst(c.http, c.routerUrl, probeKeys, probe, 'replica-stalled-2')
  const fed2 = feeder(c, feedKeys.slice(48), probe, 'replica-stalled-2-feed')
  const inFlight2 = await windowFilled(c, primary, fed2.feed)
  const acked2 = burst2.acked() + fed2.acked()
  const killedPrimary = await c.killPids(primary, pids)
  c.thaw(stalled2.pids)
  t.ok(inFlight2 >= 2, `${inFlight2} shipments were in flight when the primary was SIGKILLed`)
  t.equal(acked2, 0, 'no write was acknowledged while the in-sync replica could not answer')
  view = await c.waitForView((v) => groupOf(v, group).term === 2 && primaryUrl(v, group) === replica.url, `${replica.url} primary of ${group} at term 2`, 60_000)
  t.pass(`the replica took over ${Date.now() - killedPrimary.at} ms after the kill: ${describeView(view)}`)
  t.comment(`writes sent while the replica was stalled: ${JSON.stringify((await burst2.done).map((r) => r.status))} (the router retries them on the new primary)`)
  await fed2.done()
  await load.waitForOps(load.completedOps() + 300)

  await c.restart(primary)
  view = await c.waitForView((v) => replicaCaughtUp(v, primary.url), `${primary.url} back as an in-sync replica with lag 0`, 60_000)
  await ackedBurst(c.http, c.routerUrl, probeKeys, probe, 'after-rejoin')

  const report = await finishLoad(t, load)
  t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)
  await verifyKeys(c.http, c.routerUrl, [...probeKeys, ...feedKeys], probe)
  t.ok(probe.report().ok, `every probe write acknowledged around the kills reads back: ${probe.report().text}`)
  const cmp = await compareReplica(c.http, replica.url, primary.url, [...load.checker.trackedKeys(), ...probeKeys])
  t.equal(cmp.replica.position, cmp.primary.position, `the rejoined node stands where the new primary does (${cmp.primary.position})`)
  t.same(cmp.mismatches, [], 'the same rows on both nodes')
})
