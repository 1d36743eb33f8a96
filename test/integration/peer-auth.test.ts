import t, { type Test } from 'tap'
import { join } from 'node:path'
import { sandbox, sleep, startShardIn, startCluster, type TestCluster, type ClusterNode } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, nodeView, replicaCaughtUp, describeView } from '../harness/cluster-view'
import { peerAuth, peerCall, type PeerAuth } from '../harness/peer-auth'
import { addGroup, waitForRebalance } from '../harness/rebalance'
import { HEADER, INTERNAL, INTERNAL_REPLICATION } from '../../src/protocol/wire'
import { kvPath } from '../../src/protocol/key'

/**
 * Peer authentication on a replicated cluster (one group: a primary and a replica)
 * whose processes share a cluster secret and serve their internal API on peer ports
 * (--cluster-secret-file, --peer-port 0):
 *  - writes, reads and a failover work, and the old primary rejoins on a new peer port
 *    (the coordinator writes it into the map from its /healthz);
 *  - every internal endpoint, on the peer port without the secret, with a wrong one or
 *    with a client token, answers 401, and on the data port 404; nothing changes
 *    (installed epochs, row counts, positions, values);
 *  - with the right secret, a shipment or an in-sync change from a node that is not the
 *    group's primary, a map or a lease from another coordinator are refused;
 *  - a group added through the admin API gets its keys over the peer listeners
 *    (migration scan, import, purge, stats).
 */

const KEYS = Array.from({ length: 12 }, (_, i) => `peer-auth/${i}`)
const b64 = (s: string): string => Buffer.from(s).toString('base64')

interface Peers { primary: ClusterNode, replica: ClusterNode, peerOf: Map<string, string>, routerPeer: string }

async function peerUrlOf (c: TestCluster, node: ClusterNode): Promise<string> {
  const h = await c.health(node) as unknown as { peerPort?: number, peerTls?: boolean }
  if (typeof h.peerPort !== 'number') throw new Error(`${node.name} reports no peerPort`)
  return `${h.peerTls === true ? 'https' : 'http'}://127.0.0.1:${h.peerPort}`
}

async function writeAll (c: TestCluster, tag: string, timeoutMs = 60_000): Promise<void> {
  for (const key of KEYS) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const res = await c.http.request('PUT', c.routerUrl + kvPath(key), { body: `${tag}:${key}`, timeoutMs: 20_000 }).catch((err: Error) => err)
      if (!(res instanceof Error) && res.status < 300) break
      if (Date.now() > deadline) throw new Error(`PUT ${key} (${tag}) kept failing: ${res instanceof Error ? res.message : `${res.status} ${res.text()}`}`)
      await sleep(200)
    }
  }
}

async function readAll (c: TestCluster): Promise<string[]> {
  return await Promise.all(KEYS.map(async (key) => {
    const res = await c.http.request('GET', c.routerUrl + kvPath(key))
    return `${res.status} ${res.text()}`
  }))
}

/** What a refused probe must not change: installed epochs, counts and positions, values, the in-sync set. */
async function snapshot (c: TestCluster, auth: PeerAuth, p: Peers): Promise<unknown> {
  const nodes = [p.primary, p.replica]
  const stats = await Promise.all(nodes.map(async (n) => (await peerCall('GET', `${p.peerOf.get(n.url) as string}${INTERNAL.stats}`, { headers: auth.headers() })).body))
  const epochs = await Promise.all(nodes.map(async (n) => (await c.health(n)).epoch))
  const view = await c.view()
  return { stats, epochs, values: await readAll(c), inSync: groupOf(view, 'g1').nodes.map((n) => `${n.url} ${n.role} ${String(n.inSync)}`), epoch: view.epoch }
}

/** One forged request per internal endpoint of a shard node, each of which would change or leak something. */
function shardProbes (node: ClusterNode, p: Peers, epoch: number, position: number): Array<{ method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown }> {
  const map = { epoch: epoch + 1000, ring: { vnodesPerWeight: 8, algorithm: 'md5' }, groups: [{ id: 'g1', weight: 1, state: 'active', nodes: [{ url: node.url, role: 'primary' }] }] }
  const row = { key: 'forged', value: b64('forged'), contentType: 'text/plain', version: '9-forged' }
  return [
    { method: 'PUT', path: INTERNAL.map, body: { group: 'g1', self: node.url, coordinator: p.routerPeer, map } },
    { method: 'GET', path: INTERNAL.map },
    { method: 'POST', path: INTERNAL.migrationScan, body: { after: 0, limit: 10 } },
    { method: 'POST', path: INTERNAL.migrationImport, body: { rows: [row], requests: [], floor: 0 } },
    { method: 'POST', path: INTERNAL.migrationPurge, body: { after: '', limit: 10 } },
    { method: 'GET', path: INTERNAL.stats },
    { method: 'GET', path: `${INTERNAL.rowPrefix}${kvPath(KEYS[0] as string).slice(4)}` },
    { method: 'POST', path: INTERNAL_REPLICATION.apply, body: { group: 'g1', term: 1, sender: p.primary.url, from: position, to: position + 1, rows: [{ ...row, seq: position + 1, deleted: false }], requests: [], floor: 0 } },
    { method: 'POST', path: INTERNAL_REPLICATION.lease, body: { group: 'g1', term: 1, leaseUntil: 0, coordinator: p.routerPeer } }
  ]
}

const STRANGERS: Array<[string, Record<string, string>]> = [
  ['no secret', {}],
  ['a wrong secret', { [HEADER.peerAuth]: 'x'.repeat(43) }],
  ['a client token', { authorization: 'Bearer skv_' + 'A'.repeat(43) }]
]

async function probeEverything (t: Test, c: TestCluster, auth: PeerAuth, p: Peers): Promise<void> {
  const epoch = (await c.health(p.primary)).epoch
  for (const node of [p.primary, p.replica]) {
    const position = (await c.health(node)).position
    for (const probe of shardProbes(node, p, epoch, position)) {
      const what = `${node.name} ${probe.method} ${probe.path}`
      for (const [who, headers] of STRANGERS) {
        const res = await peerCall(probe.method, `${p.peerOf.get(node.url) as string}${probe.path}`, { headers, body: probe.body })
        t.equal(`${res.status} ${String(res.body?.error)}`, '401 unauthenticated', `${what} on the peer port with ${who}: 401`)
      }
      const onData = await peerCall(probe.method, `${node.realUrl}${probe.path}`, { headers: auth.headers(), body: probe.body })
      t.equal(onData.status, 404, `${what} on the data port (even with the secret): 404`)
    }
  }
  const inSync = { group: 'g1', url: p.replica.url, inSync: false, term: 1 }
  for (const [who, headers] of STRANGERS) {
    const res = await peerCall('POST', `${p.routerPeer}${INTERNAL_REPLICATION.inSync}`, { headers, body: inSync })
    t.equal(`${res.status} ${String(res.body?.error)}`, '401 unauthenticated', `router in-sync on its peer port with ${who}: 401`)
  }
  const onClientPort = await peerCall('POST', `${c.routerUrl}${INTERNAL_REPLICATION.inSync}`, { headers: auth.headers(), body: inSync })
  t.equal(onClientPort.status, 404, 'router in-sync on its client port: 404')
}

async function forgeWithSecret (t: Test, auth: PeerAuth, p: Peers, epoch: number, position: number): Promise<void> {
  const replicaPeer = p.peerOf.get(p.replica.url) as string
  const row = { key: 'forged-shipment', value: b64('forged'), contentType: 'text/plain', version: '1-forged', seq: position + 1, deleted: false }
  const shipment = { group: 'g1', term: 1, from: position, to: position + 1, rows: [row], requests: [], floor: 0 }
  for (const [who, sender] of [['the replica itself', p.replica.url], ['a stranger URL', 'http://127.0.0.1:1'], ['nobody', undefined]] as const) {
    const res = await peerCall('POST', replicaPeer + INTERNAL_REPLICATION.apply, { headers: auth.headers(), body: { ...shipment, sender } })
    t.equal(`${res.status} ${String(res.body?.error)}`, '409 stale_term', `a shipment with the secret but sent as ${who}: 409 stale_term`)
  }
  const row0 = await peerCall('GET', `${replicaPeer}${INTERNAL.rowPrefix}forged-shipment`, { headers: auth.headers() })
  t.same(row0.body?.rows, [], 'the forged shipment left no row on the replica')
  const primaryPeer = p.peerOf.get(p.primary.url) as string
  const map = { epoch: epoch + 1000, ring: { vnodesPerWeight: 8, algorithm: 'md5' }, groups: [{ id: 'g1', weight: 1, state: 'active', nodes: [{ url: p.primary.url, role: 'primary' }] }] }
  const install = await peerCall('PUT', primaryPeer + INTERNAL.map, { headers: auth.headers(), body: { group: 'g1', self: p.primary.url, coordinator: 'http://127.0.0.1:1', map } })
  t.equal(`${install.status} ${String(install.body?.error)}`, '403 forbidden', 'a map from another coordinator, with the secret: 403')
  const lease = await peerCall('POST', primaryPeer + INTERNAL_REPLICATION.lease, { headers: auth.headers(), body: { group: 'g1', term: 1, leaseUntil: 0, coordinator: 'http://127.0.0.1:1' } })
  t.equal(`${lease.status} ${String(lease.body?.error)}`, '403 forbidden', 'a lease from another coordinator, with the secret: 403')
  const drop = await peerCall('POST', p.routerPeer + INTERNAL_REPLICATION.inSync, { headers: auth.headers(), body: { group: 'g1', url: p.replica.url, inSync: false, term: 1, sender: p.replica.url } })
  t.equal(`${drop.status} ${String(drop.body?.error)}`, '403 forbidden', 'an in-sync change asked by a node that is not the primary, with the secret: 403')
}

t.test('peer auth: secret and peer ports on a replicated cluster; strangers get 401/404 and change nothing; failover works', async (t) => {
  const auth = peerAuth()
  const c = await startCluster(t, { name: 'peer-auth', groups: 1, replicas: 1, prepare: auth.prepare })
  let view = await c.waitForView(allReplicasInSync, 'the replica in sync', 60_000)
  const primary = c.byUrl(primaryUrl(view, 'g1'))
  const replica = c.byUrl(replicaUrls(view, 'g1')[0] as string)
  const peerOf = new Map([[primary.url, await peerUrlOf(c, primary)], [replica.url, await peerUrlOf(c, replica)]])
  const record = await peerCall('GET', `${peerOf.get(primary.url) as string}${INTERNAL.map}`, { headers: auth.headers() })
  const routerPeer = String(record.body?.coordinator)
  t.not(routerPeer, c.routerUrl, `nodes know the coordinator by the router's peer URL (${routerPeer})`)
  const p: Peers = { primary, replica, peerOf, routerPeer }
  const mapNodes = await waitForMapPeers(auth, p, 30_000)
  t.same(mapNodes, [...peerOf.entries()].map(([url, peer]) => `${url} ${peer}`).sort(), 'the installed map gives every node its peer URL')

  await writeAll(c, 'v1')
  t.same(await readAll(c), KEYS.map((k) => `200 v1:${k}`), 'writes and reads go through')

  const before = await snapshot(c, auth, p)
  await probeEverything(t, c, auth, p)
  const health = await c.health(replica)
  await forgeWithSecret(t, auth, p, (await c.health(primary)).epoch, health.position)
  t.same(await snapshot(c, auth, p), before, 'nothing changed: epochs, counts, positions, values, the in-sync set')

  await c.killHard(primary)
  view = await c.waitForView((v) => groupOf(v, 'g1').term === 2 && primaryUrl(v, 'g1') === replica.url, 'the replica promoted at term 2', 60_000)
  await writeAll(c, 'v2')
  t.same(await readAll(c), KEYS.map((k) => `200 v2:${k}`), `after the failover writes and reads go through: ${describeView(view)}`)

  await c.restart(primary)
  peerOf.set(primary.url, await peerUrlOf(c, primary))
  await c.waitForView((v) => nodeView(v, primary.url)?.inSync === true && replicaCaughtUp(v, primary.url), 'the old primary back as an in-sync replica', 90_000)
  t.same(await waitForMapPeers(auth, { ...p, primary: replica }, 30_000, peerOf), [...peerOf.entries()].map(([url, peer]) => `${url} ${peer}`).sort(),
    'the new primary\'s map has the old primary\'s new peer port')
  await writeAll(c, 'v3')
  t.same(await readAll(c), KEYS.map((k) => `200 v3:${k}`), 'writes after the rejoin go through')
  await rebalanceOverPeers(t, c, auth, peerOf)
})

async function rebalanceOverPeers (t: Test, c: TestCluster, auth: PeerAuth, peerOf: Map<string, string>): Promise<void> {
  const g2 = await c.addNode('g2', 'g2')
  peerOf.set(g2.url, await peerUrlOf(c, g2))
  const added = await addGroup(c.http, c.routerUrl, { id: 'g2', url: g2.url })
  t.equal(added.status, 202, `POST /admin/groups g2 accepted: ${added.text.slice(0, 200)}`)
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 120_000 })
  t.same(await readAll(c), KEYS.map((k) => `200 v3:${k}`), 'after adding g2 every key reads back')
  const counts = await Promise.all([...new Set([primaryUrl(await c.view(), 'g1'), g2.url])].map(async (url) =>
    (await peerCall('GET', `${peerOf.get(url) as string}${INTERNAL.stats}`, { headers: auth.headers() })).body?.keys as number))
  t.ok((counts[1] ?? 0) > 0, `g2 holds keys it got over the peer listeners (${String(counts[1])})`)
  t.equal((counts[0] ?? 0) + (counts[1] ?? 0), KEYS.length, 'and g1 gave them up (purged)')
}

/** The nodes of the map installed on `p.primary`, as "url peer", once every one has the peer `peerOf` says. */
async function waitForMapPeers (auth: PeerAuth, p: Peers, timeoutMs: number, peerOf = p.peerOf): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  let last: string[] = []
  while (Date.now() < deadline) {
    const res = await peerCall('GET', `${peerOf.get(p.primary.url) as string}${INTERNAL.map}`, { headers: auth.headers() }).catch(() => undefined)
    const nodes = (res?.body?.map?.groups?.[0]?.nodes ?? []) as Array<{ url: string, peer?: string }>
    last = nodes.map((n) => `${n.url} ${String(n.peer)}`).sort()
    if (nodes.length > 0 && nodes.every((n) => n.peer === peerOf.get(n.url))) return last
    await sleep(200)
  }
  return last
}

t.test('peer auth on one node: without a peer port the data port guards its internal API; a peer port is shared by every worker', async (t) => {
  const box = sandbox(t, 'peer-auth-node')
  const auth = peerAuth({ peerPort: false })
  const args = auth.prepare(box.tmp).shardArgs
  const start = async (name: string, extra: string[]): Promise<string> => (await startShardIn(box, { group: 'g1', nodeId: name, dataDir: join(box.tmp, name), port: 0, workers: 2, extraArgs: [...args, ...extra] })).url
  const onData = await start('on-data', [])
  for (const [who, headers] of STRANGERS) {
    const res = await peerCall('GET', onData + INTERNAL.stats, { headers })
    t.equal(`${res.status} ${String(res.body?.error)}`, '401 unauthenticated', `--peer-port -1: /internal/stats on the data port with ${who}: 401`)
  }
  t.equal((await peerCall('GET', onData + INTERNAL.stats, { headers: auth.headers() })).status, 200, '--peer-port -1: with the secret: 200')
  const health = await peerCall('GET', onData + '/healthz')
  t.same([health.status, health.body?.peerPort, health.body?.peerTls], [200, undefined, false], '/healthz stays open and reports no peer port')

  const withPeer = await start('with-peer', ['--peer-port', '0'])
  const h = (await peerCall('GET', withPeer + '/healthz')).body as { peerPort: number, workerPids: number[] }
  t.equal(h.workerPids.length, 2, 'two workers')
  const answers = await Promise.all(Array.from({ length: 8 }, async () => (await peerCall('GET', `http://127.0.0.1:${h.peerPort}${INTERNAL.stats}`, { headers: auth.headers() })).status))
  t.same(answers, Array(8).fill(200), 'the peer port answers on every connection (both workers listen on it)')
  t.equal((await peerCall('GET', withPeer + INTERNAL.stats, { headers: auth.headers() })).status, 404, 'and the data port has no internal API')
})
