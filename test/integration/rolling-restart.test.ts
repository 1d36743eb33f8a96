import t from 'tap'
import { startCluster, isAlive } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'

/**
 * SIGUSR2 to a shard node's primary replaces every worker, one at a time, while
 * clients keep working: no client request fails, every worker PID changes, the
 * history checks out. Groups have a replica (the quick-start shape): a draining
 * worker's writes wait for the replicated position like any other's.
 */

t.test('rolling restart under load: every worker replaced, no client sees it', async (t) => {
  const c = await startCluster(t, { name: 'rolling', groups: 3, replicas: 1, workers: 2 })
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 20, durationMs: 120_000, maxOpsPerClient: 6000 }, c.http)
  const running = load.run()
  await load.waitForOps(300)

  const shard = c.primaries[0]!
  const before = await c.health(shard)
  const complete = shard.proc.waitForEvent('rolling-restart-complete', 60_000)
  const signalledAt = Date.now()
  shard.proc.signal('SIGUSR2')
  t.comment(`SIGUSR2 to ${shard.group} primary ${shard.proc.pid} after ${load.completedOps()} ops`)
  const event = await complete
  const opsAtComplete = load.completedOps()
  t.pass(`rolling-restart-complete logged (workers: ${String(event.workers)}) ${Date.now() - signalledAt} ms after SIGUSR2, at ${opsAtComplete} ops`)
  t.notMatch(shard.proc.output(), /"event":"worker-drain-timeout"/, 'every old worker drained by itself (none had to be killed)')
  const after = await c.waitForHealth(shard, (h) => h.workerPids.length === before.workerPids.length && h.workerPids.every((p) => !before.workerPids.includes(p)))
  t.equal(after.pid, before.pid, 'same primary')
  t.equal(after.workerPids.length, 2, 'same worker count')
  t.same(after.workerPids.filter((p) => before.workerPids.includes(p)), [], `every worker pid changed: ${before.workerPids.join(',')} -> ${after.workerPids.join(',')}`)
  for (const p of before.workerPids) t.notOk(isAlive(p), `old worker ${p} exited`)

  // Then every node at once, as a deploy would.
  const beforeAll = await c.pids()
  const allComplete = c.primaries.map((s) => s.proc.waitForEvent('rolling-restart-complete', 60_000))
  for (const s of c.primaries) s.proc.signal('SIGUSR2')
  await Promise.all(allComplete)
  const opsAtAllComplete = load.completedOps()
  for (const s of c.primaries) {
    const old = beforeAll.get(s.group)!.slice(1)
    const h = await c.waitForHealth(s, (x) => x.workerPids.length === old.length && x.workerPids.every((p) => !old.includes(p)))
    t.equal(h.pid, s.proc.pid, `${s.group}: same primary after the simultaneous restart`)
    t.pass(`${s.group}: workers ${old.join(',')} -> ${h.workerPids.join(',')}`)
  }
  // Keep the load going a little past the last restart, then stop it (it is bounded anyway).
  await load.waitForOps(opsAtAllComplete + 300)
  load.stop()

  const stats = await running
  t.ok(stats.ops > opsAtAllComplete, `the load ran across the simultaneous restart too (${opsAtAllComplete} ops at its end)`)
  t.ok(stats.ops > opsAtComplete, `the load ran across the whole restart (${opsAtComplete} ops at its end, ${stats.ops} in all)`)
  t.equal(stats.failedRequests, 0, `no failed client requests: ${formatStats(stats)}`)
  const report = await load.verify()
  t.equal(report.lostWrites.length, 0, `no lost writes\n${report.text}`)
  t.equal(report.staleReads.length, 0, `no stale reads\n${report.text}`)
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 8 * 20, 'every key was read back')
  for (const p of c.launched) t.ok(p.running(), `${p.name} primary still running`)
})
