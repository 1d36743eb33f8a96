import t from 'tap'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { startCluster, type TestCluster, type ClusterNode } from '../harness/cluster'
import { GroupRing } from '../../src/ring/ring'

/**
 * Group commit on a real shard node (synchronous=FULL, default --group-commit-max-ops):
 * concurrent writes share transactions, yet no write is acknowledged before its commit
 * (every acknowledged write survives SIGKILL of every process of the node, with its
 * acknowledged ETag), and each write is still checked alone (If-Match chains from
 * several clients never both succeed against the same version).
 */


async function ownedKeys (c: TestCluster, node: ClusterNode, prefix: string, count: number): Promise<string[]> {
  const view = await c.http.getJson<ClusterView>(`${c.routerUrl}/cluster`)
  const ring = new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
  const out: string[] = []
  for (let i = 0; out.length < count; i++) if (ring.ownerOf(`${prefix}/${i}`) === node.group) out.push(`${prefix}/${i}`)
  return out
}

/** Sums a metric's samples (all label sets) in Prometheus text. */
function metricSum (text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

t.test('group commit: acknowledged writes survive SIGKILL; conditional writes stay exclusive', async (t) => {
  const c = await startCluster(t, { name: 'group-commit', groups: 1, workers: 2, synchronous: 'FULL' })
  const { http } = c
  const node = c.primaries[0]!

  t.test('If-Match chains from several clients never both succeed against one version', async (t) => {
    const [key] = await ownedKeys(c, node, 'chain', 1)
    const first = await http.put(node.url, key!, 'v0')
    t.equal(first.status, 201)
    const initial = first.header('etag')!
    const successes = new Map<string, string>()
    const doubles: string[] = []
    let conflicts = 0
    let errors = 0
    const deadline = Date.now() + 3000
    await Promise.all(Array.from({ length: 12 }, async (_, client) => {
      let etag = initial
      for (let i = 0; Date.now() < deadline; i++) {
        const res = await http.put(node.url, key!, `c${client}-${i}`, { 'if-match': etag })
        if (res.status === 200) {
          const next = res.header('etag')!
          if (successes.has(etag)) doubles.push(`${etag} → ${successes.get(etag)!} and ${next}`)
          successes.set(etag, next)
          etag = next
        } else if (res.status === 412) {
          conflicts++
          etag = (res.json<{ current: string }>()).current
        } else {
          errors++
        }
      }
    }))
    t.equal(errors, 0, 'no other answers')
    t.same(doubles, [], 'no version was replaced twice')
    t.ok(successes.size > 20 && conflicts > 20, `${successes.size} successes, ${conflicts} conflicts: real contention`)
    // The successes form one chain from the initial version to the current one.
    let at = initial
    let steps = 0
    while (successes.has(at)) { at = successes.get(at)!; steps++ }
    t.equal(steps, successes.size, 'every success is a link of one chain')
    t.equal((await http.get(node.url, key!)).header('etag'), at, 'which ends at the current version')
  })

  t.test('every acknowledged write reads back after SIGKILL of the whole node mid-load', async (t) => {
    const CLIENTS = 32
    const keys = await ownedKeys(c, node, 'gc', CLIENTS * 8)
    /** Per key: the last acknowledged value and etag, and a write in flight (outcome unknown). */
    const acked = new Map<string, { value: string, etag: string }>()
    const inflight = new Map<string, string>()
    let ackCount = 0
    let killed = false
    const load = Promise.all(Array.from({ length: CLIENTS }, async (_, client) => {
      const mine = keys.filter((_, i) => i % CLIENTS === client)
      for (let i = 0; !killed; i++) {
        const key = mine[i % mine.length]!
        const value = `c${client} write ${i} ${'x'.repeat(i % 50)}`
        inflight.set(key, value)
        let res
        try {
          res = await http.put(node.url, key, value, { 'content-type': 'text/plain' })
        } catch {
          return // the node is gone: this write's outcome is unknown
        }
        if (res.status !== 200 && res.status !== 201) return
        inflight.delete(key)
        acked.set(key, { value, etag: res.header('etag')! })
        ackCount++
      }
    }))
    const started = Date.now()
    while (ackCount < 1500 && Date.now() - started < 20_000) await new Promise((resolve) => setTimeout(resolve, 20))
    const metrics = await http.request('GET', `${node.url}/metrics`)
    const commits = metricSum(metrics.text(), 'shardkv_shard_group_commit_ops_count')
    const ops = metricSum(metrics.text(), 'shardkv_shard_group_commit_ops_sum')
    t.ok(commits > 0 && ops / commits > 1.5, `writes share transactions: ${ops} ops in ${commits} commits (${(ops / commits).toFixed(1)} per commit)`)
    const ackedBeforeKill = ackCount
    killed = true
    await c.killHard(node)
    await load
    t.ok(ackedBeforeKill >= 1000, `${ackedBeforeKill} writes acknowledged before the kill (${Date.now() - started} ms)`)

    await c.restart(node)
    const problems: string[] = []
    for (const [key, want] of acked) {
      const res = await http.get(node.url, key)
      const got = res.status === 200 ? res.text() : `<${res.status}>`
      if (got === want.value && res.header('etag') === want.etag) continue
      // A write in flight at the kill may or may not have committed; anything else is a lost write.
      if (got === inflight.get(key)) continue
      problems.push(`${key}: acknowledged ${JSON.stringify(want.value)} ${want.etag}, read ${JSON.stringify(got)} ${res.header('etag') ?? ''}`)
    }
    t.same(problems.slice(0, 10), [], `all ${acked.size} keys read back their last acknowledged write`)
  })
})
