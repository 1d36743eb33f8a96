import t from 'tap'
import { kvPath } from '../../src/protocol/key'
import { LoadGenerator } from '../harness/history'
import { finishLoad } from '../harness/load-check'
import { sleep, startShardIn, startCluster } from '../harness/cluster'
import { allReplicasInSync } from '../harness/cluster-view'
import { rawRow } from '../harness/replication'
import { join } from 'node:path'

/**
 * The two hard cases of failover:
 *  - a primary killed while a rebalance copies keys into its group: the rebalance
 *    still finishes and nothing acknowledged is lost;
 *  - a primary that was frozen (SIGSTOP) through its own failover and then resumes,
 *    still believing it is primary: nothing written through it is ever read back.
 */

t.test('SIGKILL of a primary while a rebalance copies into its group', async (t) => {
  const c = await startCluster(t, { name: 'fo-rebalance', groups: 2, replicas: 1, routerArgs: ['--rebalance-rows-per-sec', '800', '--rebalance-batch', '100'] })
  await c.waitForView(allReplicasInSync, 'every replica in sync')
  // Preload so the copy lasts a few seconds.
  for (let i = 0; i < 3000; i += 100) {
    await Promise.all(Array.from({ length: 100 }, async (_, j) => await c.box.http.request('PUT', c.routerUrl + kvPath(`pre-${i + j}`), { body: `pre-${i + j}` })))
  }
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 4, keysPerClient: 20, durationMs: 90_000, maxOpsPerClient: 20_000 }, c.box.http)
  void load.run() // finishLoad waits for it

  // A new group with a replica, added through the admin API.
  const [p3, r3] = await Promise.all(['g3', 'g3-r1'].map(async (name) => await startShardIn(c.box, { group: 'g3', nodeId: name, dataDir: join(c.box.tmp, name), port: 0, workers: 1 })))
  const added = await c.box.http.request('POST', `${c.routerUrl}/admin/groups`, { body: JSON.stringify({ id: 'g3', url: p3!.url, weight: 1, replicas: [r3!.url] }), headers: { 'content-type': 'application/json' } })
  t.equal(added.status, 202, 'add of g3 accepted')
  const copying = async (): Promise<boolean> => (await c.box.http.getJson<{ rebalance: { phase: string, copied: number } | null }>(`${c.routerUrl}/admin/rebalance`)).rebalance?.phase === 'copying'
  const deadline = Date.now() + 20_000
  while (!(await copying()) && Date.now() < deadline) await sleep(50)
  t.ok(await copying(), 'the rebalance is copying')
  await sleep(800)
  // g3's replica may still be catching up (not in sync): wait for it, so a promotion is possible.
  await c.waitForView((v) => v.groups.find((g) => g.id === 'g3')?.nodes.every((n) => n.role === 'primary' || n.inSync === true) === true, 'g3 replica in sync', 30_000)
  const pids = await c.box.http.getJson<{ pid: number, workerPids: number[] }>(`${p3!.url}/healthz`)
  for (const pid of [pids.pid, ...pids.workerPids]) process.kill(pid, 'SIGKILL')
  t.comment(`SIGKILLed g3's primary during the copy, after ${load.completedOps()} ops`)
  await c.waitForView((v) => v.groups.find((g) => g.id === 'g3')?.term === 2, 'g3 failed over', 30_000)
  t.pass('g3 failed over to its replica')
  const done = await (async () => {
    const until = Date.now() + 60_000
    while (Date.now() < until) {
      const r = (await c.box.http.getJson<{ rebalance: { phase: string } | null }>(`${c.routerUrl}/admin/rebalance`)).rebalance
      if (r?.phase === 'done') return true
      await sleep(200)
    }
    return false
  })()
  t.ok(done, 'the rebalance finished')
  await finishLoad(t, load)
  let missing = 0
  for (let i = 0; i < 3000; i += 100) {
    const got = await Promise.all(Array.from({ length: 100 }, async (_, j) => await c.box.http.request('GET', c.routerUrl + kvPath(`pre-${i + j}`))))
    missing += got.filter((r, j) => r.status !== 200 || r.body.toString() !== `pre-${i + j}`).length
  }
  t.equal(missing, 0, 'every preloaded key reads back after the rebalance and the failover')
})

t.test('a deposed primary that resumes cannot make a write anyone reads', async (t) => {
  const c = await startCluster(t, { name: 'fo-deposed', groups: 1, replicas: 1 })
  await c.waitForView(allReplicasInSync, 'the replica in sync')
  for (let i = 0; i < 50; i++) await c.box.http.request('PUT', c.routerUrl + kvPath(`k${i}`), { body: 'before' })
  const before = await c.view()
  const oldPrimary = before.groups[0]!.nodes.find((n) => n.role === 'primary')!.url
  const h = await c.box.http.getJson<{ pid: number, workerPids: number[] }>(`${oldPrimary}/healthz`)
  const pids = [h.pid, ...h.workerPids]
  for (const pid of pids) process.kill(pid, 'SIGSTOP')
  t.teardown(() => { for (const pid of pids) { try { process.kill(pid, 'SIGCONT') } catch {} } })
  await c.waitForView((v) => v.groups[0]!.term === 2, 'failover to the replica', 30_000)
  t.pass('the frozen primary was replaced (term 2)')
  // The new primary takes writes.
  for (let i = 0; i < 50; i++) {
    const r = await c.box.http.request('PUT', c.routerUrl + kvPath(`k${i}`), { body: 'after' })
    t.ok(r.status < 300, `write k${i} through the router after the failover`) 
  }
  // Resume the old primary and write to it directly, as a router with the old map would.
  for (const pid of pids) process.kill(pid, 'SIGCONT')
  const direct = await Promise.all(Array.from({ length: 50 }, async (_, i) => await c.box.http.request('PUT', oldPrimary + kvPath(`k${i}`), { body: 'deposed', headers: { 'x-shardkv-epoch': String(before.epoch) }, timeoutMs: 10_000 }).catch((err: Error) => ({ status: 0, body: Buffer.from(err.message) }))))
  const accepted = direct.filter((r) => r.status >= 200 && r.status < 300).length
  t.equal(accepted, 0, `the deposed primary acknowledged none of 50 writes (statuses ${[...new Set(direct.map((r) => r.status))].join(', ')})`)
  const reads = await Promise.all(Array.from({ length: 50 }, async (_, i) => await c.box.http.request('GET', c.routerUrl + kvPath(`k${i}`))))
  t.equal(reads.filter((r) => r.body.toString() === 'deposed').length, 0, 'no value written through the deposed primary is read back')
  t.equal(reads.filter((r) => r.body.toString() === 'after').length, 50, 'every acknowledged write after the failover reads back')
  // It rejoins as a replica of term 2 and its stray local writes are gone (full resync).
  await c.waitForView((v) => v.groups[0]!.nodes.find((n) => n.url === oldPrimary)?.inSync === true, 'the deposed primary rejoins in sync', 40_000)
  const row = await rawRow(c.box.http, oldPrimary, 'k0')
  t.equal(row?.value, 'after', 'the old primary now holds the new primary\'s value, not its own stray write')
})
