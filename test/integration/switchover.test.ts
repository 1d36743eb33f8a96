import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { LoadGenerator, formatStats } from '../harness/history'
import { startCluster, type TestCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, nodeView, replicaCaughtUp, describeView, ringOfView } from '../harness/cluster-view'
import { compareReplica } from '../harness/replication'
import { switchoverPath, type WireSwitchoverReply } from '../../src/protocol/wire'
import type { HttpResponse } from '../harness/http'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * Planned switchover (issue 11 item 2): under a history-checked load, the primary of g1
 * hands its role to its in-sync replica through the admin API, and back again; g2 is
 * switched over by the script. Every time: the replica is primary under term + 1, the old
 * primary comes back as an in-sync replica without a resync, and no client request fails — the fenced
 * primary answers 421 (lease_expired), which the router retries until the new primary
 * serves. At the end every acknowledged write reads back and the history is linearizable.
 */

const ROOT = join(__dirname, '..', '..')

async function switchover (c: TestCluster, group: string, body?: unknown): Promise<HttpResponse> {
  return await c.http.request('POST', c.routerUrl + switchoverPath(group), {
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    timeoutMs: 30_000
  })
}

/** Runs `npm run switchover` (its built file) and resolves with its exit code and output. */
async function runScript (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', 'switchover.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { if (child.pid !== undefined) { try { process.kill(child.pid, 'SIGKILL') } catch {} } }, 60_000)
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

interface Leg { from: string, to: string, body: unknown }

/** One switchover of g1 under the load, to `term`: checks the answer, both nodes' roles, the rejoin; reports the figures. */
async function switchLeg (t: Test, c: TestCluster, load: LoadGenerator, leg: Leg, term: number): Promise<ClusterView> {
  // The old primary keeps its data (it holds exactly the new primary's log up to the
  // handoff): the new primary's first shipment finds it there instead of resyncing it.
  const rejoin = c.byUrl(leg.from).proc.waitForEvent((e) => e.event === 'replica-kept-data' || e.event === 'replica-resync', 30_000)
  const sent = Date.now()
  const res = await switchover(c, 'g1', leg.body)
  const answered = Date.now()
  t.equal(res.status, 200, `switchover of g1 to ${leg.to}: ${res.text()}`)
  const reply = res.json<WireSwitchoverReply>()
  t.same({ from: reply.from, to: reply.to, term: reply.term }, { from: leg.from, to: leg.to, term }, `the answer names ${leg.from} -> ${leg.to} under term ${term}`)
  // Clients' writes to g1 wait from the fence until the new primary's first lease (granted
  // as the switchover answers): the requests in flight meanwhile are its client-visible cost.
  const opsAtSwitch = load.completedOps()
  await load.waitForOps(opsAtSwitch + 200)
  const lat = load.latencyDuring(sent, answered)
  t.comment(`SWITCHOVER ${leg.from} -> ${leg.to}: ${reply.tookMs} ms from fence to published map (admin call ${answered - sent} ms, final position ${reply.position}); client requests in flight meanwhile: ${lat.requests}, p50 ${lat.p50} ms, p99 ${lat.p99} ms, max ${lat.max} ms`)

  await c.waitForView((v) => groupOf(v, 'g1').term === term && primaryUrl(v, 'g1') === leg.to, `${leg.to} primary of g1 at term ${term}`, 20_000)
  const promoted = await c.health(c.byUrl(leg.to))
  t.same({ role: promoted.role, term: promoted.term, dataTerm: promoted.dataTerm }, { role: 'primary', term, dataTerm: term }, 'the promoted node is primary and writes under the new term')
  const view = await c.waitForView((v) => replicaCaughtUp(v, leg.from), `${leg.from} back as an in-sync replica of g1`, 60_000)
  t.pass(`the old primary is an in-sync replica again: ${describeView(view)}`)
  t.equal(nodeView(view, leg.from)?.role, 'replica', 'listed as a replica')
  t.equal((await rejoin).event, 'replica-kept-data', 'it kept its data: no resync')
  const old = await c.health(c.byUrl(leg.from))
  t.same({ role: old.role, term: old.term, dataTerm: old.dataTerm }, { role: 'replica', term, dataTerm: term }, 'a replica of the new term, holding data of the new term')
  return view
}

/** Every refusal answers through the error catalogue and changes nothing. */
async function refusals (t: Test, c: TestCluster, view: ClusterView, replicaOfG1: string): Promise<void> {
  // Refusals, through the one error catalogue.
  const unknown = await switchover(c, 'nope')
  t.same([unknown.status, unknown.json<{ error: string }>().error], [404, 'no_such_group'], 'unknown group: 404')
  const notJson = await switchover(c, 'g1', '{"to":')
  t.same([notJson.status, notJson.json<{ error: string }>().error], [400, 'invalid_request'], 'a body that is not JSON: 400')
  const badTo = await switchover(c, 'g1', { to: 5 })
  t.equal(badTo.status, 400, '"to" not a string: 400')
  const notReplica = await switchover(c, 'g1', { to: 'http://127.0.0.1:1' })
  t.same([notReplica.status, notReplica.json<{ error: string }>().error], [400, 'invalid_request'], '"to" not a replica of the group: 400')
  const extra = await switchover(c, 'g1', { to: replicaOfG1, force: true })
  t.equal(extra.status, 400, 'an unknown field: 400')

  // A group without a replica: 409.
  const g2Replica = replicaUrls(view, 'g2')[0] as string
  const removed = await c.http.request('DELETE', `${c.routerUrl}/admin/groups/g2/replicas?url=${encodeURIComponent(g2Replica)}`)
  t.equal(removed.status, 200, `removed g2's replica: ${removed.text()}`)
  const lonely = await switchover(c, 'g2')
  t.same([lonely.status, lonely.json<{ error: string }>().error], [409, 'conflict'], `group without a replica: 409 (${lonely.text()})`)
  const after = await c.view()
  t.equal(groupOf(after, 'g1').term, 3, 'refusals changed nothing: g1 stays at term 3')
}

t.test('planned switchover under load: no failed request, nothing lost, the old primary rejoins in sync', async (t) => {
  const c = await startCluster(t, { name: 'switchover', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const first = primaryUrl(view, 'g1')
  const second = replicaUrls(view, 'g1')[0] as string
  t.equal(groupOf(view, 'g1').term, 1, 'g1 starts at term 1')

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 12, durationMs: 120_000, maxOpsPerClient: 6000, requestTimeoutMs: 25_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  try {
    await load.waitForOps(400)

    // There, and back: the second time without `to` (the coordinator picks the only in-sync replica).
    const legs: Leg[] = [
      { from: first, to: second, body: { to: second } },
      { from: second, to: first, body: undefined }
    ]
    let term = 1
    for (const leg of legs) view = await switchLeg(t, c, load, leg, ++term)

    // The script, once, on g2, while the load goes on.
    const g2From = primaryUrl(view, 'g2')
    const g2To = replicaUrls(view, 'g2')[0] as string
    const script = await runScript(['--router', c.routerUrl, '--group', 'g2'])
    t.equal(script.code, 0, `npm run switchover -- --group g2 exits 0: ${script.stderr.trim()}`)
    t.match(script.stderr, `switched g2 over from ${g2From} to ${g2To}: term 2`, 'and says what it did in one line')
    view = await c.waitForView((v) => primaryUrl(v, 'g2') === g2To && replicaCaughtUp(v, g2From), 'g2 switched over, its old primary in sync again', 60_000)
    const refused = await runScript(['--router', c.routerUrl, '--group', 'nope'])
    t.equal(refused.code, 1, 'the script exits 1 on a refusal')
    t.match(refused.stderr, /^switchover: .*no_such_group/, `with one clear line: ${refused.stderr.trim()}`)

    await load.waitForOps(load.completedOps() + 200)
    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    t.equal(stats.failedRequests, 0, `no client request failed across three switchovers: ${JSON.stringify(stats.failures.slice(0, 5))}`)
    t.ok(stats.retriedByRouter > 0, `the router absorbed the fenced primaries' refusals (${stats.retriedByRouter} requests retried)`)
    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)

    // The replicas that kept their data hold exactly their primaries' rows.
    view = await c.view()
    const ring = ringOfView(view)
    for (const g of ['g1', 'g2']) {
      const keys = load.checker.trackedKeys().filter((k) => ring.ownerOf(k) === g)
      const cmp = await compareReplica(c.http, primaryUrl(view, g), replicaUrls(view, g)[0] as string, keys)
      t.same(cmp.mismatches, [], `${g}: ${keys.length} keys, the same row on the primary and its replica`)
      t.same([cmp.replica.keys, cmp.replica.tombstones, cmp.replica.position], [cmp.primary.keys, cmp.primary.tombstones, cmp.primary.position], `${g}: same counts and position (${JSON.stringify(cmp.primary)})`)
    }
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }

  await refusals(t, c, view, second)
})
