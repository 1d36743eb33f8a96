import t from 'tap'
import { LoadGenerator, HistoryChecker, formatStats } from '../harness/history'
import { sleep, startCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, nodeView, replicaCaughtUp, describeView, keysOwnedBy, ringOfView } from '../harness/cluster-view'
import { firstAckedWrite, ackedBurst, verifyKeys, compareReplica } from '../harness/replication'
import { kvPath } from '../../src/protocol/key'

/**
 * A replica that dies (DESIGN "Replication and failover"): its primary must not wait
 * for it forever. After --replica-timeout-ms (1000 ms by default) of failed shipments
 * the primary has the coordinator drop the replica from the in-sync set and then
 * acknowledges writes without it: writes stall for a moment, none fails, and the
 * history stays intact. Restarted, the replica catches up and rejoins the in-sync set
 * with exactly the primary's data.
 *
 * And the other side of the same rule: a replica that fell out of the in-sync set is
 * never promoted. When the primary dies while its only replica is behind, the group
 * waits (unavailable) instead of losing acknowledged writes, and resumes on the same
 * term when the primary returns.
 */

interface TimedWrite { at: number, ms: number, status: number | string }

/** Sequential PUTs of unique values to keys of one group until `stop()`: latency of each, into `checker`. */
function steadyWriter (c: { http: import('../harness/http').HttpClient, routerUrl: string }, keys: readonly string[], checker: HistoryChecker, tag: string): { stop: () => void, done: Promise<TimedWrite[]> } {
  let stopped = false
  const done = (async () => {
    const out: TimedWrite[] = []
    for (let i = 0; !stopped && i < 100_000; i++) {
      const key = keys[i % keys.length] as string
      const value = `${tag}|${key}|${i}`
      checker.writeStarted(key, value)
      const t0 = Date.now()
      try {
        const res = await c.http.request('PUT', c.routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 })
        if (res.status === 200 || res.status === 201) checker.writeAcked(key, value)
        else checker.writeUnknown(key, value)
        out.push({ at: t0, ms: Date.now() - t0, status: res.status })
      } catch (err) {
        checker.writeUnknown(key, value)
        out.push({ at: t0, ms: Date.now() - t0, status: String(err) })
      }
      await sleep(5)
    }
    return out
  })()
  return { stop: () => { stopped = true }, done }
}

t.test('SIGKILL of a replica under load: writes go on after a short stall, none fails; restarted, it catches up', async (t) => {
  const c = await startCluster(t, { name: 'replica-crash', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const group = 'g1'
  const primary = c.byUrl(primaryUrl(view, group))
  const replica = c.byUrl(replicaUrls(view, group)[0] as string)

  const probe = new HistoryChecker()
  const probeKeys = keysOwnedBy(view, group, 8, `steady-${Date.now().toString(36)}`)
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 12, durationMs: 90_000, maxOpsPerClient: 5000, requestTimeoutMs: 25_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  const writer = steadyWriter(c, probeKeys, probe, 'steady')
  try {
    await load.waitForOps(300)
    const killed = await c.killHard(replica)
    t.equal(killed.pids.length, 2, `SIGKILLed ${group}'s replica: supervisor ${killed.pids[0]}, worker ${killed.pids.slice(1).join(', ')}`)

    view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === false, `${replica.url} dropped from the in-sync set`, 20_000)
    const droppedAfter = Date.now() - killed.at
    t.pass(`the primary had the replica dropped ${droppedAfter} ms after the kill: ${describeView(view)}`)
    t.equal(groupOf(view, group).term, 1, 'no failover: the primary is fine')
    t.equal(primaryUrl(view, group), primary.url, 'same primary')

    // Writes to the group go on without the replica.
    const afterDrop = new HistoryChecker()
    await ackedBurst(c.http, c.routerUrl, keysOwnedBy(view, group, 8, `after-drop-${Date.now().toString(36)}`), afterDrop, 'after-drop')
    await sleep(1500)

    await c.restart(replica)
    view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === true && nodeView(v, replica.url)?.health === 'up', `${replica.url} in sync again (under load)`, 40_000)
    t.pass(`the restarted replica caught up and is in sync again: ${describeView(view)}`)
    await load.waitForOps(load.completedOps() + 200)

    writer.stop()
    load.stop()
    const writes = await writer.done
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    const aroundKill = writes.filter((w) => w.at + w.ms >= killed.at - 100 && w.at <= killed.at + droppedAfter + 2000)
    const stall = Math.max(0, ...writes.filter((w) => w.at + w.ms >= killed.at).map((w) => w.ms))
    t.comment(`REPLICA CRASH: replica dropped ${droppedAfter} ms after SIGKILL; longest write to ${group} after the kill took ${stall} ms; ${aroundKill.length} writes around the kill: ${aroundKill.map((w) => `${w.ms}ms/${w.status}`).join(' ')}`)
    const failedWrites = writes.filter((w) => w.status !== 200 && w.status !== 201)
    t.same(failedWrites, [], `every one of ${writes.length} steady writes to ${group} was acknowledged`)
    t.ok(stall < 5000, `writes to ${group} stalled ${stall} ms at most (less than the 5 s ack timeout)`)
    t.equal(stats.failedRequests, 0, `no load request failed:\n${formatStats(stats)}`)

    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)
    await verifyKeys(c.http, c.routerUrl, probeKeys, probe)
    t.ok(probe.report().ok, `steady writes read back: ${probe.report().text}`)

    view = await c.waitForView((v) => replicaCaughtUp(v, replica.url), `${replica.url} in sync with lag 0`, 30_000)
    const h = await c.health(replica)
    t.equal(h.role, 'replica', 'the restarted node is a replica')
    t.equal(h.dataTerm, 1, 'of term 1 (no resync was needed: same term)')
    const ring = ringOfView(view)
    const groupKeys = [...load.checker.trackedKeys(), ...probeKeys].filter((k) => ring.ownerOf(k) === group)
    const cmp = await compareReplica(c.http, primary.url, replica.url, groupKeys)
    t.equal(cmp.replica.keys, cmp.primary.keys, `same live keys on primary and replica (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
    t.equal(cmp.replica.tombstones, cmp.primary.tombstones, 'same tombstones')
    t.same(cmp.mismatches, [], `${groupKeys.length} keys of ${group}: the same row on both nodes`)
  } finally {
    writer.stop()
    load.stop()
    await Promise.allSettled([running, writer.done])
  }
})

t.test('an out-of-sync replica is never promoted: with the primary down and the replica behind, the group waits', async (t) => {
  const c = await startCluster(t, { name: 'replica-behind', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const group = 'g1'
  const primary = c.byUrl(primaryUrl(view, group))
  const replica = c.byUrl(replicaUrls(view, group)[0] as string)
  const probe = new HistoryChecker()
  const keys = keysOwnedBy(view, group, 24, `behind-${Date.now().toString(36)}`)
  for (const k of keys) probe.track(k)

  await ackedBurst(c.http, c.routerUrl, keys.slice(0, 12), probe, 'before')
  await c.killHard(replica)
  // A replica is dropped only when a write needs it: these wait --replica-timeout-ms, then
  // are acknowledged by the primary alone (the dead replica has none of them).
  await ackedBurst(c.http, c.routerUrl, keys, probe, 'while-replica-down')
  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === false, `${replica.url} dropped from the in-sync set`, 20_000)
  await ackedBurst(c.http, c.routerUrl, keys.slice(0, 12), probe, 'while-replica-down-2')

  const killed = await c.killHard(primary)
  // The replica comes back while the primary is down: healthy, but behind and out of sync.
  await c.restart(replica)
  view = await c.waitForView((v) => nodeView(v, replica.url)?.health === 'up' && nodeView(v, primary.url)?.health === 'down', 'the replica up and the primary down', 20_000)

  // Several failover periods (3 missed renewals of 500 ms, then the 1500 ms lease): no promotion.
  const watchUntil = Date.now() + 6000
  let promoted: string | undefined
  while (Date.now() < watchUntil && promoted === undefined) {
    const v = await c.view()
    const g = groupOf(v, group)
    if (g.term !== 1 || primaryUrl(v, group) !== primary.url) promoted = describeView(v)
    await sleep(200)
  }
  t.equal(promoted, undefined, `the out-of-sync replica was not promoted in the ${Date.now() - killed.at} ms after the primary died${promoted === undefined ? '' : `: ${promoted}`}`)
  view = await c.view()
  t.equal(nodeView(view, replica.url)?.inSync, false, `the replica is still out of sync: ${describeView(view)}`)
  const down = await c.http.request('PUT', c.routerUrl + kvPath(keys[0] as string), { body: 'refused-while-down', headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 }).catch((err: Error) => err)
  probe.writeStarted(keys[0] as string, 'refused-while-down')
  probe.writeUnknown(keys[0] as string, 'refused-while-down')
  t.ok(down instanceof Error || down.status >= 500, `a write to ${group} while it has no primary fails (${down instanceof Error ? down.message : `${down.status} ${down.text().slice(0, 120)}`})`)
  t.equal((await c.http.put(c.routerUrl, keysOwnedBy(view, 'g2', 1, 'other')[0] as string, 'g2 is fine')).status, 201, 'the other group keeps serving')

  // The primary returns: normally the coordinator's last probe before a promotion finds it
  // answering and the same term resumes. But the returned primary ships to the replica
  // (no lease needed for that) and has it marked in sync within a few hundred ms; when
  // that probe times out on the just-started node, the coordinator promotes the by-then
  // in-sync replica instead. That is safe (the primary waited for the replica from the
  // moment it asked), only needless, so it is reported, not failed.
  await c.restart(primary)
  const back = await firstAckedWrite(c.http, c.routerUrl, keys, Date.now(), probe, { timeoutMs: 30_000, tag: 'after-return' })
  t.pass(`writes to ${group} are acknowledged again ${back.ms} ms after the primary's restart`)
  view = await c.waitForView((v) => groupOf(v, group).nodes.every((n) => n.role === 'primary' ? n.health === 'up' : replicaCaughtUp(v, n.url)),
    `${group} whole again (primary up, replica in sync, lag 0)`, 40_000)
  const g = groupOf(view, group)
  if (g.term === 1) {
    t.equal(primaryUrl(view, group), primary.url, `the returned primary resumed under term 1: ${describeView(view)}`)
  } else {
    t.comment(`NOTE: the returned primary was deposed anyway: the coordinator promoted the replica once the returned primary had brought it back in sync: ${describeView(view)}`)
    t.equal(g.term, 2, 'one promotion at most')
  }

  await verifyKeys(c.http, c.routerUrl, keys, probe)
  const report = probe.report()
  t.ok(report.ok, `every write acknowledged while the replica was down reads back: ${report.text}`)
  const now = primaryUrl(view, group)
  const other = g.nodes.find((n) => n.url !== now)?.url as string
  const cmp = await compareReplica(c.http, now, other, keys)
  t.equal(cmp.replica.keys, cmp.primary.keys, `same live keys on primary and replica (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
  t.same(cmp.mismatches, [], 'the same rows on both nodes')
})
