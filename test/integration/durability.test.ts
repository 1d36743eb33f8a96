import t from 'tap'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { startCluster, isAlive, sleep, type TestCluster, type ClusterNode } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'
import { GroupRing } from '../../src/ring/ring'
import { kvPath } from '../../src/protocol/key'

/**
 * Guarantee 1 against the hardest local crash: every process of a shard node
 * (primary and workers) SIGKILLed at once, then the node restarted on the same data
 * dir and port. Shard nodes run with the default synchronous level (FULL).
 */


async function ownerRing (c: TestCluster): Promise<GroupRing> {
  const view = await c.http.getJson<ClusterView>(`${c.routerUrl}/cluster`)
  return new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
}

/** Runs fn over items with bounded concurrency. */
async function pool<T> (items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
}

t.test('500 acknowledged writes survive SIGKILL of every process of a shard node', async (t) => {
  const c = await startCluster(t, { name: 'durability', groups: 3, workers: 2, synchronous: 'FULL' })
  const { http } = c
  const r = c.routerUrl

  const N = 500
  const expected = new Map<string, string | null>()
  const keys = Array.from({ length: N }, (_, i) => `dur/${i}/${'é'.repeat(i % 5)}`)
  let failedWrites = 0
  await pool(keys, 16, async (key) => {
    const value = `first:${key}:${'x'.repeat(key.length * 3)}`
    const res = await http.put(r, key, value, { 'content-type': 'text/plain' })
    if (res.status === 201) expected.set(key, value)
    else failedWrites++
  })
  // Overwrite a fifth and delete a tenth, so the crash has replaced values and tombstones to lose too.
  await pool(keys.slice(0, 100), 16, async (key) => {
    const value = `second:${key}`
    const res = await http.put(r, key, value, { 'content-type': 'text/plain' })
    if (res.status === 200) expected.set(key, value)
    else failedWrites++
  })
  await pool(keys.slice(100, 150), 16, async (key) => {
    const res = await http.del(r, key)
    if (res.status === 204) expected.set(key, null)
    else failedWrites++
  })
  t.equal(failedWrites, 0, 'every write before the crash was acknowledged')

  const ring = await ownerRing(c)
  const victim: ClusterNode = c.primaries[1]!
  const owned = keys.filter((k) => ring.ownerOf(k) === victim.group)
  t.ok(owned.length > 50, `${victim.group} owns ${owned.length} of the keys`)
  const before = await c.health(victim)

  const { pids: killed } = await c.killHard(victim)
  t.equal(killed.length, 3, `killed primary ${killed[0]} and workers ${killed.slice(1).join(', ')}`)
  t.ok(killed.every((pid) => !isAlive(pid)), 'every process of the node is gone')
  t.equal((await victim.proc.exited).signal, 'SIGKILL', 'the primary died of SIGKILL')

  // While it is down: its keys fail with a JSON 5xx, other groups keep serving.
  const other = keys.find((k) => ring.ownerOf(k) !== victim.group && expected.get(k) !== null)!
  const otherRes = await http.get(r, other)
  t.equal(otherRes.status, 200, 'a key of another group is still served')
  const downStarted = Date.now()
  const down = await http.request('GET', r + kvPath(owned[0]!), { timeoutMs: 30_000 })
  t.ok(down.status >= 500 && down.status <= 504, `a key of the dead group: ${down.status} ${down.text().slice(0, 120)}`)
  t.match(down.header('content-type') ?? '', /application\/json/, 'as a JSON error')
  t.ok(Date.now() - downStarted < 20_000, `answered in ${Date.now() - downStarted} ms, not hung`)

  await c.restart(victim)
  const after = await c.health(victim)
  t.not(after.pid, before.pid, `a new primary (${before.pid} -> ${after.pid})`)
  t.equal(new URL(victim.url).port, String(victim.port), 'on the same port')
  t.equal(after.nodeId, before.nodeId, 'same node id (same database)')
  t.equal(after.position, before.position, `replication position survived (${after.position})`)

  const problems: string[] = []
  await pool([...expected.keys()], 16, async (key) => {
    let res = await http.get(r, key).catch((err: Error) => err)
    // The router's pooled sockets to the dead node may need a retry to notice.
    for (let i = 0; i < 10 && (res instanceof Error || res.status >= 500); i++) {
      await sleep(200)
      res = await http.get(r, key).catch((err: Error) => err)
    }
    const want = expected.get(key)!
    if (res instanceof Error) { problems.push(`${key}: ${res.message}`); return }
    const got = res.status === 200 ? res.text() : res.status === 404 ? null : `<status ${res.status}>`
    if (got !== want) problems.push(`lost-write key=${JSON.stringify(key)} expected=${JSON.stringify(want)} got=${JSON.stringify(got)} owner=${ring.ownerOf(key) ?? '?'}`)
  })
  t.same(problems, [], `all ${expected.size} acknowledged writes read back (${owned.length} on the killed node)`)
  t.equal((await http.put(r, owned[0]!, 'after restart')).status, 200, 'the restarted node accepts writes')
})

t.test('SIGKILL of a whole shard node under load: no acknowledged write lost, no stale read', async (t) => {
  const c = await startCluster(t, { name: 'durability-load', groups: 3, workers: 2, synchronous: 'FULL' })
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 16, durationMs: 40_000, maxOpsPerClient: 2000, requestTimeoutMs: 20_000 }, c.http)
  const running = load.run()
  await load.waitForOps(300)
  const victim = c.primaries[2]!
  const killedAt = load.completedOps()
  await c.killHard(victim)
  await sleep(500)
  await c.restart(victim)
  // Keep the load going past the restart, then stop it (it is bounded anyway).
  await load.waitForOps(load.completedOps() + 600)
  load.stop()
  const stats = await running
  t.ok(stats.ops > killedAt, `the load went on after the crash: ${formatStats(stats)}`)
  // Requests to the dead node may fail (the node was down); what was acknowledged must hold.
  t.comment(`failed requests while the node was down: ${stats.failedRequests}`)
  const report = await load.verify()
  t.equal(report.lostWrites.length, 0, `no lost writes\n${report.text}`)
  t.equal(report.staleReads.length, 0, `no stale reads\n${report.text}`)
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 8 * 16, 'every key was read back')
})
