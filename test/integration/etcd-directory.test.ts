import t from 'tap'
import { request } from 'undici'
import { etcdAvailable } from '../harness/etcd'
import { startCluster, waitFor } from '../harness/cluster'
import { TcpProxy } from '../harness/tcp-proxy'
import { addGroup, admin, clusterView, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { LoadGenerator } from '../harness/history'
import { finishLoad } from '../harness/load-check'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { freePort } from '../harness/docker'
import { registeredNodes, registeredRouters } from '../../src/registry/etcd/directory'
import type { DashboardSnapshot } from '../../src/protocol/dashboard'
import { DASHBOARD } from '../../src/protocol/wire'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { shardkv } from '../harness/cli'

/**
 * The service directory in etcd (src/registry/etcd/directory.ts): routers register as
 * nodes do, so the leading coordinator knows them (the dashboard's router traffic line),
 * and leave it when they stop; a group can be added by starting its nodes with its id on
 * any machine and naming only that id (seed 12.2.4; `shardkv add-shard --registered`),
 * under a history-checked load.
 */


if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('routers register; a group is added by its id from the nodes registered for it', async (t) => {
    const c = await startCluster(t, { name: 'etcd-dir', groups: 1, workers: 0, etcdMembers: 1, coordinators: 1, routers: 2 })
    const gw = new EtcdGateway({ endpoints: c.etcd?.endpoints ?? [] })
    t.teardown(async () => { await gw.close() })
    const [r1, r2] = c.routers
    if (r1 === undefined || r2 === undefined) throw new Error('two routers expected')
    const routerUrls = async (): Promise<string[]> => (await registeredRouters(gw, 'test')).map((r) => r.url).sort()
    await waitFor(async () => (await routerUrls()).length === 2, 30_000, 'both routers registered')
    t.same(await routerUrls(), [r1.url, r2.url].sort(), 'each router is registered under its URL')

    const load = new LoadGenerator({ baseUrl: r1.url, clients: 3, keysPerClient: 40, durationMs: 120_000, maxOpsPerClient: 100_000, keyPrefix: 'dir' })
    load.run().catch(() => undefined) // finishLoad awaits it (and reports a failure)
    await load.waitForOps(100)
    const snapshot = await routerTraffic(c.coordinator.url)
    t.ok(snapshot.traffic.router !== null, `the dashboard shows the routers' traffic with etcd (${JSON.stringify(snapshot.traffic.router)})`)

    r2.signal('SIGTERM')
    await r2.exited
    t.same(await routerUrls(), [r1.url], 'a router that stops leaves the registry before it exits, not after its lease')

    const args = { workers: 0, extraArgs: c.registryArgs }
    const primary = await startGroupNode(c, 'g2', { ...args, nodeId: 'n-g2-a' })
    // Others reach the replica through a forwarder (as through a NAT or a Service): it registers
    // under the forwarder's URL, which it names with --advertise-url.
    const port = await freePort(new Set())
    const front = new TcpProxy({ host: '127.0.0.1', port })
    const advertised = await front.listen()
    t.teardown(async () => { await front.close() })
    const replica = await startGroupNode(c, 'g2', { workers: 0, nodeId: 'n-g2-b', extraArgs: [...c.registryArgs, '--port', String(port), '--advertise-url', advertised] })
    await waitFor(async () => (await registeredNodes(gw, 'test')).filter((n) => n.group === 'g2').length === 2, 30_000, 'both g2 nodes registered')
    t.equal((await registeredNodes(gw, 'test')).find((n) => n.nodeId === 'n-g2-b')?.url, advertised, 'a node registers under its --advertise-url')
    const unknown = await admin(c.http, 'POST', `${r1.url}/admin/groups`, { id: 'g9' })
    t.equal(unknown.status, 400, `a group nobody registered for is refused: ${unknown.text.slice(0, 160)}`)
    // From the command line, as an operator would: `shardkv add-shard --registered --id g2`.
    const added = await shardkv(['add-shard', '--registered', '--id', 'g2', '--router', r1.url, '--cluster-dir', join(tmpdir(), `shardkv-no-local-cluster-${process.pid}`), '--no-wait', '--json'])
    t.equal(added.code, 0, `add-shard --registered naming only the id is accepted: ${added.stderr}`)
    t.match(JSON.parse(added.stdout), { group: 'g2', url: primary.url, rebalance: { id: String } }, 'it names the group, its primary and the rebalance')
    await waitForRebalance(c.http, r1.url, (p) => p.phase === 'done', { what: 'the add done', timeoutMs: 90_000 })
    const g2 = (await clusterView(c.http, r1.url)).groups.find((g) => g.id === 'g2')
    t.equal(g2?.nodes.find((n) => n.role === 'primary')?.url, primary.url, 'the first node started is the primary')
    t.same(g2?.nodes.filter((n) => n.role === 'replica').map((n) => n.url), [advertised], `the other is its replica, by its advertised URL (it listens at ${replica.url})`)
    const duplicate = await addGroup(c.http, r1.url, { id: 'g2', url: primary.url })
    t.equal(duplicate.status, 409, 'adding it again is a conflict')

    await load.waitForOps(load.completedOps() + 100)
    const report = await finishLoad(t, load, { noFailures: true })
    t.ok(report.ok, `history checks out\n${report.text}`)
  })
}

/** Reads the coordinator's dashboard stream until a snapshot carries the routers' traffic (two scrapes apart). */
async function routerTraffic (coordinatorUrl: string): Promise<DashboardSnapshot> {
  const res = await request(`${coordinatorUrl}${DASHBOARD.events}`, { headersTimeout: 10_000 })
  let buffer = ''
  let last: DashboardSnapshot | undefined
  const deadline = Date.now() + 30_000
  try {
    for await (const chunk of res.body) {
      buffer += (chunk as Buffer).toString('utf8')
      let end: number
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, end).split('\n')
        buffer = buffer.slice(end + 2)
        if (!frame.includes('event: snapshot')) continue
        last = JSON.parse(frame.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')) as DashboardSnapshot
        if (last.traffic.router !== null) return last
      }
      if (Date.now() > deadline) break
    }
  } finally {
    res.body.destroy()
  }
  if (last === undefined) throw new Error('no dashboard snapshot arrived')
  return last
}
