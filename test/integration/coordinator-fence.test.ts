import t from 'tap'
import { startCluster, type TestCluster, type ClusterNode } from '../harness/cluster'
import { primaryUrl, allReplicasInSync } from '../harness/cluster-view'
import { peerAuth, peerCall } from '../harness/peer-auth'
import { INTERNAL, INTERNAL_REPLICATION } from '../../src/protocol/wire'

/**
 * The leadership fence on a real shard node (src/registry/fence.ts): once a coordinator
 * at fence 5 has installed its map, a coordinator at an older fence can neither install
 * a map (not even a newer epoch) nor grant a lease; a newer fence is a newer leader and
 * is taken from any address; and the fence survives the node's restart. The cluster's
 * own router is stopped first: the test speaks for the coordinators itself, over the
 * node's peer listener with the cluster secret.
 */

async function peerUrlOf (c: TestCluster, node: ClusterNode): Promise<string> {
  const h = await c.health(node) as unknown as { peerPort?: number }
  if (typeof h.peerPort !== 'number') throw new Error(`${node.name} reports no peerPort`)
  return `http://127.0.0.1:${h.peerPort}`
}

t.test('a node refuses maps and leases from a coordinator whose fence is older than one it has seen', async (t) => {
  const auth = peerAuth()
  const c = await startCluster(t, { name: 'fence', groups: 1, replicas: 1, prepare: auth.prepare })
  const view = await c.waitForView(allReplicasInSync, 'the replica in sync', 60_000)
  const primary = c.byUrl(primaryUrl(view, 'g1'))
  await c.router.stop(10_000)
  let peer = await peerUrlOf(c, primary)
  const call = async (method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown): Promise<{ status: number, body: any }> =>
    await peerCall(method, `${peer}${path}`, { headers: auth.headers(), ...(body !== undefined ? { body } : {}) })

  const installed = (await call('GET', INTERNAL.map)).body as { epoch: number, fence: number, map: { epoch: number } }
  t.equal(installed.fence, 0, 'the file registry\'s coordinator installed at fence 0')
  const map = installed.map
  const install = async (epoch: number, fence: number, coordinator: string): Promise<{ status: number, body: any }> =>
    await call('PUT', INTERNAL.map, { group: 'g1', self: primary.url, coordinator, fence, map: { ...map, epoch } })
  const lease = async (fence: number, coordinator: string): Promise<{ status: number, body: any }> =>
    await call('POST', INTERNAL_REPLICATION.lease, { group: 'g1', term: 1, leaseUntil: Date.now() + 3000, coordinator, fence })

  const a = 'http://127.0.0.1:1'
  const b = 'http://127.0.0.1:2'
  t.equal((await install(map.epoch, 5, a)).status, 200, 'a leader at fence 5 (another address) re-installs the map')
  const refused = await install(map.epoch + 1, 3, a)
  t.match(refused, { status: 409, body: { error: 'stale_fence' } }, 'a map from fence 3, even at a newer epoch, is refused')
  t.equal((await call('GET', INTERNAL.map)).body.epoch, map.epoch, 'and nothing was installed')
  t.match(await lease(3, a), { status: 409, body: { error: 'stale_fence' } }, 'a lease at fence 3 is refused')
  t.equal((await lease(5, a)).status, 200, 'the leader\'s lease at fence 5 is taken')
  t.match(await lease(5, b), { status: 403 }, 'at the same fence, only from the installing coordinator')
  t.equal((await install(map.epoch + 1, 7, b)).status, 200, 'a newer leader (fence 7) installs from any address')
  t.match(await install(map.epoch + 2, 5, a), { status: 409, body: { error: 'stale_fence' } }, 'after which fence 5 is the deposed one')

  await c.killHard(primary)
  await c.restart(primary)
  peer = await peerUrlOf(c, primary)
  const after = (await call('GET', INTERNAL.map)).body as { epoch: number, fence: number }
  t.same([after.epoch, after.fence], [map.epoch + 1, 7], 'the node restarted with its map and fence')
  t.match(await install(map.epoch + 2, 5, a), { status: 409, body: { error: 'stale_fence' } }, 'and still refuses fence 5')
})
