import t, { type Test } from 'tap'
import { etcdAvailable } from '../harness/etcd'
import { netnsAvailable } from '../harness/netns'
import { waitFor } from '../harness/cluster'
import { eventTime, startNetPlane, type NetPlane, type PlaneNode } from '../harness/netns-plane'
import { LoadGenerator, formatStats } from '../harness/history'
import type { LinOp } from '../harness/linearizability'
import type { LaunchedProcess } from '../../src/local/launcher'
import type { GroupView } from '../../src/protocol/cluster-view'
import { DIGEST_MAX_ROWS, DIGEST_PATH, type WireDigestPage } from '../../src/protocol/digest'

/**
 * A primary partitioned away from the control plane but not from its clients (DESIGN
 * guarantee 7), with real processes on hosts of their own (network namespaces): etcd on
 * `e`, coordinators on `c1` and `c2`, g1's primary on `p` and its replica on `n2`, a router
 * on `r` and another on `p` itself. Every packet between p's host and {e, c1, c2} is dropped;
 * p still reaches its replica, router r and the test process, which runs history-checked
 * loads straight at p (the client on p's side), through r, and through the router beside p
 * (cut off with it: its map goes stale). p must stop serving on its lease before the
 * coordinator promotes n2, answer nothing after, and, once healed, come back as a replica
 * of the new term holding exactly the new primary's rows; every history must check out.
 */

/** The answers a node gives that serve a client: a read (200, 404) or an acknowledged write. */
const SERVED = new Set([200, 201, 204, 404])

/** Wall-clock (Date.now) completion time of a history entry (performance.now based). */
function completedAt (op: LinOp): number | undefined {
  return op.completeMs === undefined ? undefined : performance.timeOrigin + op.completeMs
}

/** A load's answers that served (a read or an ack) and completed in [from, to), as lines for a message. */
function servedBetween (load: LoadGenerator, from: number, to: number): string[] {
  return load.lin.ops.filter((op) => op.client !== 'verify' && op.status !== undefined && SERVED.has(op.status))
    .filter((op) => { const at = completedAt(op) as number; return at >= from && at < to })
    .map((op) => `${op.kind} ${op.key} -> ${String(op.status)}`)
}

async function g1Of (plane: NetPlane): Promise<GroupView | undefined> {
  return (await plane.view())?.groups.find((g) => g.id === 'g1')
}

/** g1 once the map has p back as an in-sync replica. */
async function backInSync (plane: NetPlane, p: PlaneNode): Promise<GroupView> {
  return await waitFor(async () => {
    const g = await g1Of(plane)
    return g?.nodes.find((n) => n.url === p.url && n.role === 'replica' && n.inSync === true) !== undefined ? g : undefined
  }, 60_000, `${p.nodeId} back in sync as a replica`)
}

async function digestOf (plane: NetPlane, node: PlaneNode): Promise<WireDigestPage> {
  const r = await plane.http.request('POST', node.url + DIGEST_PATH, { body: JSON.stringify({ after: '', limit: DIGEST_MAX_ROWS }), headers: { 'content-type': 'application/json' } })
  if (r.status !== 200) throw new Error(`digest of ${node.nodeId}: ${r.status} ${r.text().slice(0, 200)}`)
  return r.json<WireDigestPage>()
}

/**
 * What p answered its own client, in time: a served answer (a read or an ack) or a refusal.
 * p must have served its last one before the promotion began, and only refused after.
 */
function judgeAnswersOfP (t: Test, direct: LoadGenerator, o: { cutAt: number, promotionBeganAt: number, promotedAt: number, resyncMs: number }): void {
  const { cutAt, promotionBeganAt, promotedAt } = o
  const pOps = direct.lin.ops.filter((op) => op.client !== 'verify')
  const served = pOps.filter((op) => op.status !== undefined && SERVED.has(op.status)).map((op) => ({ op, at: completedAt(op) as number }))
  const lastServed = Math.max(...served.map((s) => s.at))
  const lastAck = Math.max(...served.filter((s) => s.op.kind !== 'get').map((s) => s.at))
  const firstRefusal = Math.min(...pOps.filter((op) => op.status === 421 && (completedAt(op) ?? 0) > cutAt).map((op) => completedAt(op) as number))
  t.comment(`cut -> p's last acknowledged write: ${Math.round(lastAck - cutAt)} ms; -> its last answer that served: ${Math.round(lastServed - cutAt)} ms; -> its first refusal (lease out): ${Math.round(firstRefusal - cutAt)} ms; ` +
    `-> the promotion began: ${promotionBeganAt - cutAt} ms, published: ${promotedAt - cutAt} ms; heal -> p in sync again: ${o.resyncMs} ms`)
  t.ok(lastServed < promotionBeganAt, `p served its last client ${Math.round(promotionBeganAt - lastServed)} ms before the promotion began`)
  t.same(servedBetween(direct, promotionBeganAt, Infinity), [], 'nothing read or acknowledged through p after the promotion')
  t.ok(pOps.filter((op) => (completedAt(op) ?? 0) > promotedAt).length >= 100, 'p\'s client kept asking after the promotion (and was refused)')
}

/** p holds what the new primary holds, as a replica of the new term (compared by digest once both stand at one position). */
async function holdsTheNewPrimarysRows (t: Test, plane: NetPlane, p: PlaneNode, heir: PlaneNode, term: number): Promise<void> {
  const [ph, hh] = await Promise.all([plane.nodeHealth(p), plane.nodeHealth(heir)])
  t.match({ role: ph.role, term: ph.term, dataTerm: ph.dataTerm }, { role: 'replica', term, dataTerm: term }, `${p.nodeId} is a replica holding data of term ${term}`)
  t.equal(hh.role, 'primary', `${heir.nodeId} is the primary`)
  await waitFor(async () => (await plane.nodeHealth(p)).position === (await plane.nodeHealth(heir)).position, 20_000, 'p caught up with the new primary')
  const [pd, hd] = await Promise.all([digestOf(plane, p), digestOf(plane, heir)])
  t.ok(pd.done && hd.done, 'each digest covers every row')
  t.same({ rows: pd.rows, digest: pd.digest }, { rows: hd.rows, digest: hd.digest }, `${p.nodeId} holds exactly the new primary's ${hd.rows} rows`)
}

if (!etcdAvailable() || !netnsAvailable()) {
  t.pass('skipped: needs etcd (etcd-server) and root with iproute2 for network namespaces; .ci/run installs both')
} else {
  t.test('a primary cut from the coordinators and etcd stops serving before its replica is promoted, and rejoins as its replica', async (t) => {
    const plane = await startNetPlane(t, {
      name: 'pprimary',
      // A second router shares p's host, so the partition cuts it off with p (and its map goes stale).
      layout: { etcd: ['e'], coordinators: ['c1', 'c2'], groups: { g1: ['p', 'n2'] }, routers: ['r', 'p'] },
      // Clients of the router wait out the failover (retried 421s) instead of failing.
      routerArgs: ['--retry-timeout-ms', '25000']
    })
    t.teardown(() => { if (t.passing() === false) t.comment(plane.output()) })
    const [p, heir] = plane.nodes as [PlaneNode, PlaneNode]
    const [router, besideP] = plane.routers as [LaunchedProcess, LaunchedProcess]
    const before = await waitFor(async () => { const g = await g1Of(plane); return g?.nodes.every((n) => n.role === 'primary' || n.inSync === true) === true ? g : undefined }, 60_000, 'g1\'s replica in sync')
    const leader = await plane.leader()

    const options = { clients: 3, keysPerClient: 30, durationMs: 150_000, maxOpsPerClient: 100_000, requestTimeoutMs: 40_000 }
    const routed = new LoadGenerator({ ...options, baseUrl: router.url, keyPrefix: 'pp-routed' })
    // Straight at p: every answer is p's own. A pause between ops keeps refusals from spinning.
    const direct = new LoadGenerator({ ...options, baseUrl: p.url, keyPrefix: 'pp-direct', thinkMs: 5 })
    const cutOff = new LoadGenerator({ ...options, clients: 2, baseUrl: besideP.url, keyPrefix: 'pp-beside' })
    const running = Promise.all([routed.run(), direct.run(), cutOff.run()])
    await Promise.all([routed.waitForOps(300), direct.waitForOps(300), cutOff.waitForOps(200)])

    plane.block('p', ['e', 'c1', 'c2'])
    const cutAt = Date.now()
    const failover = await waitFor(() => plane.events(leader, 'failover')[0], 60_000, 'the coordinator fails g1 over')
    // The failover line is written once the new map is published; its transition began transitionMs earlier.
    const promotedAt = eventTime(failover)
    const promotionBeganAt = promotedAt - Number(failover.transitionMs ?? 0)
    t.equal(failover.to, heir.url, `${heir.nodeId} promoted (term ${String(failover.term)})`)
    // About as fast as for a dead process (three timed-out grants, then the 800 ms lease): a partition drops
    // packets, and control calls that waited out TCP's connect timeout made this 25 s.
    t.ok(promotedAt - cutAt < 15_000, `the failover was published ${promotedAt - cutAt} ms after the cut`)
    const opsAtPromotion = direct.completedOps()
    await Promise.all([routed.waitForOps(routed.completedOps() + 300), direct.waitForOps(opsAtPromotion + 100)])

    plane.unblock('p', ['e', 'c1', 'c2'])
    const healedAt = Date.now()
    const rejoined = await backInSync(plane, p)
    const resyncMs = Date.now() - healedAt
    t.equal(rejoined.term, before.term + 1, `g1 is at term ${rejoined.term}`)
    await Promise.all([routed.waitForOps(routed.completedOps() + 200), direct.waitForOps(direct.completedOps() + 100), cutOff.waitForOps(cutOff.completedOps() + 100)])
    routed.stop()
    direct.stop()
    cutOff.stop()
    const [rs, ds, cs] = await running

    judgeAnswersOfP(t, direct, { cutAt, promotionBeganAt, promotedAt, resyncMs })
    t.comment(`through the router: ${formatStats(rs)}`)
    t.comment(`straight at p: ${formatStats(ds)}`)
    t.comment(`through the router beside p: ${formatStats(cs)}`)
    // Its map is stale and it can reach only p of g1: anything it served in the partition came through p.
    t.same(servedBetween(cutOff, promotionBeganAt, healedAt), [], 'the router cut off with p read and acknowledged nothing from the promotion to the heal')
    t.same(rs.failures, [], 'no request through the router failed')
    for (const [name, report] of [['router', await routed.verify()], ['p\'s client', await direct.verify(router.url)], ['the router beside p', await cutOff.verify(router.url)]] as const) {
      t.equal(report.lostWrites.length, 0, `${name}: every key reads back its last acknowledged state\n${report.text}`)
      t.equal(report.staleReads.length, 0, `${name}: no stale read\n${report.text}`)
      t.ok(report.ok, `${name}: history checks out\n${report.text}`)
    }

    await holdsTheNewPrimarysRows(t, plane, p, heir, rejoined.term)
  })
}
