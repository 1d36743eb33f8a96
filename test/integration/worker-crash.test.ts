import t from 'tap'
import { startCluster, isAlive, type ClusterNode } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'

/**
 * A worker of a shard node is SIGKILLed in the middle of concurrent load. The
 * router retries what the dead worker dropped (same request id, so a write that did
 * commit is not applied twice) and the node's primary forks a replacement: clients
 * see no failure, no acknowledged write is lost and no read is stale.
 */

t.test('SIGKILL of a worker under load: invisible to clients', async (t) => {
  const c = await startCluster(t, { name: 'worker-crash', groups: 3, workers: 2 })
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 20, durationMs: 40_000, maxOpsPerClient: 3000 }, c.http)
  const running = load.run()

  const killWorker = async (shard: ClusterNode, atOps: number): Promise<number> => {
    await load.waitForOps(atOps)
    const before = await c.health(shard)
    t.equal(before.workerPids.length, 2, `${shard.group}: 2 workers before`)
    const victim = before.workerPids[0]!
    const replaced = shard.proc.waitForEvent((e) => e.event === 'worker-replaced' && e.replaced === victim, 20_000)
    process.kill(victim, 'SIGKILL')
    const killedAtOps = load.completedOps()
    t.comment(`${shard.group}: killed worker ${victim} after ${killedAtOps} ops`)
    const event = await replaced
    t.pass(`${shard.group}: primary logged worker-replaced (new pid ${String(event.workerPid)})`)
    const after = await c.waitForHealth(shard, (h) => h.workerPids.length === 2 && !h.workerPids.includes(victim))
    t.equal(after.pid, before.pid, `${shard.group}: same primary`)
    t.equal(after.workerPids.length, before.workerPids.length, `${shard.group}: same worker count`)
    t.notOk(after.workerPids.includes(victim), `${shard.group}: the dead worker is gone from workerPids`)
    t.ok(after.workerPids.includes(before.workerPids[1]!), `${shard.group}: the other worker lives on`)
    const fresh = after.workerPids.find((p) => !before.workerPids.includes(p))
    t.ok(fresh !== undefined && isAlive(fresh), `${shard.group}: replacement worker ${String(fresh)} is alive`)
    t.notOk(isAlive(victim), `${shard.group}: worker ${victim} is dead`)
    return killedAtOps
  }

  // One kill early in the load, one on another node later on.
  const first = await killWorker(c.primaries[0]!, 300)
  const second = await killWorker(c.primaries[1]!, load.completedOps() + 300)
  // Keep the load going a little past the second replacement, then stop it (it is bounded anyway).
  await load.waitForOps(load.completedOps() + 300)
  load.stop()
  const stats = await running
  t.ok(stats.ops > first && stats.ops > second, `the load kept running across both kills (killed at ${first} and ${second} ops, ${stats.ops} in all)`)
  t.equal(stats.failedRequests, 0, `no failed client requests: ${formatStats(stats)}`)
  const report = await load.verify()
  t.equal(report.lostWrites.length, 0, `no lost writes\n${report.text}`)
  t.equal(report.staleReads.length, 0, `no stale reads\n${report.text}`)
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 8 * 20, 'every key was read back')
  for (const p of c.launched) t.ok(p.running(), `${p.name} primary still running`)
})
