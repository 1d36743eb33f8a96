import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LoadGenerator, formatStats } from '../harness/history'
import { sleep, waitUntilDead } from '../harness/cluster'
import { allReplicasInSync, describeView, groupOf, nodeView, primaryUrl } from '../harness/cluster-view'
import { localSandbox, type LocalSandbox } from '../harness/local-launcher'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * Issue 14, as an operator sees it on `npm start`: SIGKILL the primary of g1 under a
 * history-checked load. The replica takes over; the launcher restarts the killed node
 * from its data dir and port (after --restart-delay-ms 5000, so the failover always
 * comes first); the node learns it was deposed, resyncs and rejoins the in-sync set, so
 * the group is redundant again with nobody's help. While it has no in-sync replica,
 * GET /cluster says `redundancy: "none"` and the router warns. Then the new primary is
 * SIGKILLed too: the group fails over again (back to the first node) and heals again.
 * No acknowledged write is lost, no read is stale.
 */

async function view (box: LocalSandbox): Promise<ClusterView> {
  return await box.http.getJson<ClusterView>(`${box.routerUrl}/cluster`)
}

async function waitForView (box: LocalSandbox, pred: (v: ClusterView) => boolean, what: string, timeoutMs: number, onView?: (v: ClusterView) => void): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs
  let last: ClusterView | undefined
  while (Date.now() < deadline) {
    try {
      last = await view(box)
      onView?.(last)
      if (pred(last)) return last
    } catch { /* the router may be busy */ }
    await sleep(100)
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}; last view: ${last === undefined ? 'none' : describeView(last)}`)
}

/** SIGKILLs a node's supervisor and workers at once (PIDs from its /healthz). */
async function killNode (box: LocalSandbox, url: string): Promise<number[]> {
  const h = await box.http.getJson<{ pid: number, workerPids: number[] }>(`${url}/healthz`)
  const pids = [h.pid, ...h.workerPids]
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await waitUntilDead(pids, 10_000)
  return pids
}

async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return await Promise.race([p, sleep(ms).then(() => { throw new Error(`${what}: not within ${ms} ms`) })])
}

/** The log's text once it has a line matching `re` (it is checked every second). */
async function logLine (path: string, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs
  let text = ''
  while (Date.now() < deadline) {
    text = readFileSync(path, 'utf8')
    if (re.test(text)) break
    await sleep(200)
  }
  return text
}

const backInSync = (url: string) => (v: ClusterView): boolean => {
  const n = nodeView(v, url)
  return n?.role === 'replica' && n.inSync === true && n.health === 'up'
}

t.test('SIGKILL of a primary on npm start: failover, then the launcher brings the node back as an in-sync replica, twice', async (t) => {
  const box = await localSandbox(t, 'heal', { groups: 2, replicas: 1 })
  const l = await box.start(['--restart-delay-ms', '5000'])
  await l.waitFor(/local cluster is up/, 90_000)
  let v = await waitForView(box, (x) => allReplicasInSync(x) && x.groups.every((g) => g.nodes.every((n) => n.health === 'up')), 'every node up, every replica in sync', 60_000)
  t.equal(groupOf(v, 'g1').redundancy, 'ok', `g1 is redundant: ${describeView(v)}`)
  t.equal(groupOf(v, 'g1').inSyncReplicas, 1, 'with one in-sync replica')

  // On the sandbox's client: it carries the admin token.
  const load = new LoadGenerator({ baseUrl: box.routerUrl, clients: 6, keysPerClient: 10, durationMs: 200_000, maxOpsPerClient: 8000, requestTimeoutMs: 25_000 }, box.http)
  t.teardown(async () => { await load.close() })
  const running = load.run()
  try {
    await within(load.waitForOps(300), 60_000, '300 ops of load')
    const first = primaryUrl(v, 'g1')
    const second = v.groups.find((g) => g.id === 'g1')?.nodes.find((n) => n.role === 'replica')?.url as string

    // Kill 1: the first primary.
    const killed = await killNode(box, first)
    t.pass(`SIGKILLed g1's primary ${first}: ${killed.join(', ')}`)
    await l.waitFor(/g1 \(pid \d+\) exited unexpectedly \(signal SIGKILL\); restarting in 5\.0 s/, 10_000)
    t.pass('the launcher reports the exit and schedules a restart')
    let sawNone = false
    v = await waitForView(box, (x) => groupOf(x, 'g1').term === 2 && primaryUrl(x, 'g1') === second, `${second} primary of g1 at term 2`, 30_000,
      (x) => { if (groupOf(x, 'g1').redundancy === 'none') sawNone = true })
    t.pass(`failover: ${describeView(v)}`)
    v = await waitForView(box, backInSync(first), `${first} back as an in-sync replica`, 120_000,
      (x) => { if (groupOf(x, 'g1').redundancy === 'none') sawNone = true })
    t.ok(sawNone, 'while g1 had no in-sync replica, /cluster said redundancy "none"')
    t.pass(`healed without help: ${describeView(v)}`)
    t.match(l.output(), /g1 restarted \(pid \d+\)/, 'the launcher restarted it')
    t.equal(groupOf(v, 'g1').redundancy, 'ok', 'g1 is redundant again')
    t.equal(groupOf(v, 'g1').inSyncReplicas, 1, 'with one in-sync replica')
    const coordinatorLog = await logLine(join(box.dir, 'logs', 'coordinator.log'), /"event":"redundancy-restored","group":"g1"/, 15_000)
    t.match(coordinatorLog, /"event":"redundancy-none","group":"g1"/, 'the coordinator warned that g1 had no in-sync replica')
    t.match(coordinatorLog, /"event":"redundancy-restored","group":"g1"/, 'and said when it had one again')
    const metrics = (await box.http.request('GET', `${box.coordinatorUrl}/metrics`)).text()
    t.match(metrics, /shardkv_coordinator_group_in_sync_replicas\{group="g1"\} 1/, 'metrics: g1 has one in-sync replica')
    t.match(metrics, /shardkv_coordinator_group_redundancy_none\{group="g1"\} 0/, 'metrics: g1 is not flagged')

    // Kill 2: the new primary. The group fails over back to the first node.
    const opsBefore = load.completedOps()
    await within(load.waitForOps(opsBefore + 200), 60_000, 'load after the rejoin')
    await killNode(box, second)
    t.pass(`SIGKILLed g1's new primary ${second}`)
    v = await waitForView(box, (x) => groupOf(x, 'g1').term === 3 && primaryUrl(x, 'g1') === first, `${first} primary of g1 at term 3`, 40_000)
    t.pass(`second failover: ${describeView(v)}`)
    const opsAfter = load.completedOps()
    await within(load.waitForOps(opsAfter + 200), 60_000, 'load after the second failover')
    v = await waitForView(box, backInSync(second), `${second} back as an in-sync replica`, 120_000)
    t.pass(`healed again: ${describeView(v)}`)

    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
  t.equal(await box.interrupt(l), 0, 'Ctrl-C stops the cluster')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')
})
