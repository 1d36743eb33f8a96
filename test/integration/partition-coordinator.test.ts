import t, { type Test } from 'tap'
import { etcdAvailable } from '../harness/etcd'
import { netnsAvailable } from '../harness/netns'
import { isAlive, waitFor } from '../harness/cluster'
import { eventTime, startNetPlane, type NetPlane, type PlaneNode } from '../harness/netns-plane'
import { LoadGenerator, formatStats } from '../harness/history'
import { INTERNAL, INTERNAL_REPLICATION, switchoverPath } from '../../src/protocol/wire'
import type { LaunchedProcess } from '../../src/local/launcher'

/**
 * The leading coordinator partitioned from etcd, not from the nodes (DESIGN guarantee 7),
 * with real processes on hosts of their own (network namespaces): etcd on `e`, the leader
 * on `c1`, the standby on `c2`, g1's primary and replica on `n1` and `n2`, a router on `r`.
 * Every packet between c1 and e is dropped; c1 still reaches every node. The leader must
 * stop acting on its own clock before the standby is elected (its lease outlives the
 * margin it keeps), and once the new leader has acted, a command carrying the old
 * leader's fence is refused by every node, while a history-checked load through the
 * router runs the whole time.
 */

interface InstalledMap { epoch: number, fence: number, map: { epoch: number } & Record<string, unknown> }

/** What a node holds: its installed map and the fence it accepted with it. */
async function installed (plane: NetPlane, node: PlaneNode): Promise<InstalledMap> {
  return await plane.http.getJson<InstalledMap>(`${node.url}${INTERNAL.map}`)
}

/** The fence a coordinator logged when it was (last) elected. */
function electedFence (plane: NetPlane, p: LaunchedProcess): { fence: number, at: number } | undefined {
  const e = plane.events(p, 'coordinator-elected').at(-1)
  return e === undefined ? undefined : { fence: Number(e.fence), at: eventTime(e) }
}

/** Whether a coordinator still says it leads (an exited one does not). */
async function claimsToLead (plane: NetPlane, p: LaunchedProcess): Promise<boolean> {
  const h = await plane.http.getJson<{ leader?: boolean }>(`${p.url}/healthz`).catch(() => undefined)
  return h?.leader === true
}

/**
 * A map change of the new leader's own: a switchover of g1 through the router (which relays
 * to whoever leads). Resolves with g1's term in the map it published.
 */
async function switchOver (t: Test, plane: NetPlane, router: LaunchedProcess): Promise<number> {
  const before = await installed(plane, plane.nodes[0] as PlaneNode)
  let last = ''
  // Asked again while the answer is not a success: the leader may still be settling in.
  const switched = await waitFor(async () => {
    const r = await plane.http.request('POST', router.url + switchoverPath('g1'), { body: '{}', headers: { 'content-type': 'application/json' }, timeoutMs: 30_000 })
    last = `${r.status} ${r.text().slice(0, 200)}`
    return r.status === 200
  }, 60_000, () => `a switchover of g1 through the new leader (last answer: ${last})`)
  t.ok(switched, 'the new leader changed the map (a switchover of g1)')
  const view = await waitFor(async () => { const v = await plane.view(); return v !== undefined && v.epoch > before.epoch ? v : undefined }, 30_000, 'the new map published')
  const g1 = view.groups.find((g) => g.id === 'g1')
  if (g1 === undefined) throw new Error('g1 missing from the view')
  return g1.term
}

/**
 * Every command the old leader could still send, at its fence: a lease for the current
 * primary, and a newer map (far ahead, so that it cannot be mistaken for one the new leader
 * installs meanwhile). Each node must refuse both and keep what it had.
 */
async function refusesOldFence (t: Test, plane: NetPlane, o: { term: number, old: LaunchedProcess, oldFence: number, newFence: number }): Promise<void> {
  const post = async (method: string, url: string, body: unknown): Promise<{ status: number, error?: string }> => {
    const r = await plane.http.request(method, url, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    return { status: r.status, error: r.json<{ error?: string }>().error }
  }
  for (const n of plane.nodes) {
    const now = await installed(plane, n)
    const forged = now.epoch + 1000
    const lease = await post('POST', n.url + INTERNAL_REPLICATION.lease, { group: 'g1', term: o.term, leaseUntil: Date.now() + 3000, coordinator: o.old.url, fence: o.oldFence })
    t.match(lease, { status: 409, error: 'stale_fence' }, `${n.nodeId} refuses a lease at the old fence`)
    const map = await post('PUT', n.url + INTERNAL.map, { group: 'g1', self: n.url, coordinator: o.old.url, fence: o.oldFence, map: { ...now.map, epoch: forged } })
    t.match(map, { status: 409, error: 'stale_fence' }, `${n.nodeId} refuses a newer map at the old fence`)
    const after = await installed(plane, n)
    t.ok(after.epoch < forged && after.fence === o.newFence, `${n.nodeId} installed nothing of it (epoch ${after.epoch}, fence ${after.fence})`)
  }
}

if (!etcdAvailable() || !netnsAvailable()) {
  t.pass('skipped: needs etcd (etcd-server) and root with iproute2 for network namespaces; .ci/run installs both')
} else {
  t.test('a leading coordinator cut from etcd stops before the standby leads; its fence is refused once the new leader acted', async (t) => {
    const plane = await startNetPlane(t, {
      name: 'pcoord',
      layout: { etcd: ['e'], coordinators: ['c1', 'c2'], groups: { g1: ['n1', 'n2'] }, routers: ['r'] },
      // Clients wait out the leaderless gap (no lease grants) instead of failing: the router retries 421s this long.
      routerArgs: ['--retry-timeout-ms', '25000']
    })
    t.teardown(() => { if (t.passing() === false) t.comment(plane.output()) })
    const [old, standby] = plane.coordinators as [LaunchedProcess, LaunchedProcess]
    const router = plane.routers[0] as LaunchedProcess
    await waitFor(async () => (await plane.view())?.groups[0]?.nodes.every((n) => n.role === 'primary' || n.inSync === true), 60_000, 'g1\'s replica in sync')
    const oldFence = electedFence(plane, old)?.fence ?? 0
    t.ok(oldFence > 0, `coordinator-1 leads at fence ${oldFence}`)
    for (const n of plane.nodes) {
      await waitFor(async () => (await installed(plane, n)).fence === oldFence, 20_000, `${n.nodeId} holds fence ${oldFence}`)
    }

    const load = new LoadGenerator({ baseUrl: router.url, clients: 4, keysPerClient: 30, durationMs: 150_000, maxOpsPerClient: 100_000, keyPrefix: 'pcoord', requestTimeoutMs: 40_000 })
    const running = load.run()
    await load.waitForOps(300)

    plane.block('c1', ['e'])
    const cutAt = Date.now()
    const deposed = await waitFor(() => plane.events(old, 'coordinator-deposed')[0], 30_000, 'coordinator-1 deposes itself')
    const stoppedAt = eventTime(deposed)
    await waitFor(async () => !await claimsToLead(plane, old), 10_000, 'coordinator-1 no longer claims to lead')
    const next = await plane.leader(60_000)
    t.equal(next.pid, standby.pid, 'the standby leads')
    const elected = electedFence(plane, standby)
    if (elected === undefined) throw new Error('coordinator-2 logged no election')
    t.ok(elected.fence > oldFence, `the new leadership has a newer fence (${oldFence} -> ${elected.fence})`)
    t.ok(stoppedAt < elected.at, `the old leader stopped acting (${stoppedAt - cutAt} ms after the cut) before the standby was elected (${elected.at - cutAt} ms after it)`)

    // The new leader acts: its fence reaches every node (the startup install), then a map change of its own.
    for (const n of plane.nodes) {
      await waitFor(async () => (await installed(plane, n)).fence === elected.fence, 30_000, `${n.nodeId} holds fence ${elected.fence}`)
    }
    const actedAt = Date.now()
    const term = await switchOver(t, plane, router)
    await refusesOldFence(t, plane, { term, old, oldFence, newFence: elected.fence })

    plane.unblock('c1', ['e'])
    await load.waitForOps(load.completedOps() + 300)
    for (const n of plane.nodes) t.equal((await installed(plane, n)).fence, elected.fence, `${n.nodeId} still holds the new fence after the heal`)
    t.comment(`the old leader after the heal: ${isAlive(old.pid) ? `running, leader: ${String(await claimsToLead(plane, old))}` : `exited (${JSON.stringify(await old.exited)})`}`)
    load.stop()
    const stats = await running
    t.comment(`cut -> old leader stopped: ${stoppedAt - cutAt} ms; -> standby elected: ${elected.at - cutAt} ms; -> its fence on every node: ${actedAt - cutAt} ms`)
    t.comment(`load: ${formatStats(stats)}`)
    t.same(stats.failures, [], 'no client request failed')
    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history checks out\n${report.text}`)
  })
}
