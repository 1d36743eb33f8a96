import t from 'tap'
import { join } from 'node:path'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { sandbox, shardHealth, startShardIn, waitFor, waitUntilDead } from '../harness/cluster'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { registeredNodes } from '../../src/registry/etcd/directory'
import type { WireNodeRegistration } from '../../src/protocol/wire'

/**
 * Shard nodes register themselves in etcd (--registry etcd://...): a running node has
 * its entry (id, group, data and peer URLs, pid), a node killed with SIGKILL leaves the
 * registry within its lease's TTL, a restarted one is back, and a clean stop (SIGTERM)
 * removes its entry at once.
 */


if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('a node is in the registry exactly while it runs', async (t) => {
    const etcd = await startEtcd(t, { members: 1, name: 'register' })
    const gw = new EtcdGateway({ endpoints: etcd.endpoints })
    t.teardown(async () => { await gw.close() })
    const box = sandbox(t, 'register')
    const registryArgs = ['--registry', `etcd://${etcd.endpoints.map((e) => e.replace('http://', '')).join(',')}`, '--registry-cluster', 'reg', '--registry-ttl-seconds', '2', '--peer-port', '0']
    const start = async (): Promise<Awaited<ReturnType<typeof startShardIn>>> =>
      await startShardIn(box, { group: 'g7', nodeId: 'n-g7', dataDir: join(box.tmp, 'g7'), port: 0, workers: 1, extraArgs: registryArgs })
    const entryOf = async (): Promise<WireNodeRegistration | undefined> => (await registeredNodes(gw, 'reg')).find((n) => n.nodeId === 'n-g7')

    let node = await start()
    const health = await shardHealth(box, node.url) as unknown as { peerPort?: number }
    const entry = await waitFor(entryOf, 20_000, 'the node registered')
    t.match(entry, { nodeId: 'n-g7', group: 'g7', url: node.url, peer: `http://127.0.0.1:${String(health.peerPort)}`, pid: node.pid }, `registered: ${JSON.stringify(entry)}`)

    const pids = [node.pid, ...((await shardHealth(box, node.url)).workerPids ?? [])]
    for (const pid of pids) process.kill(pid, 'SIGKILL')
    await waitUntilDead(pids)
    const killedAt = Date.now()
    await waitFor(async () => (await entryOf()) === undefined, 15_000, 'the killed node\'s entry expired')
    t.comment(`the entry went ${Date.now() - killedAt} ms after the SIGKILL (lease TTL 2 s)`)
    t.ok(Date.now() - killedAt < 10_000, 'within a few seconds of its TTL')

    node = await start()
    const back = await waitFor(entryOf, 20_000, 'the restarted node registered again')
    t.equal(back.pid, node.pid, 'the restarted node is registered again, with its new pid')

    process.kill(node.pid, 'SIGTERM')
    const stoppedAt = Date.now()
    await waitFor(async () => (await entryOf()) === undefined, 15_000, 'the stopped node\'s entry removed')
    t.comment(`the entry went ${Date.now() - stoppedAt} ms after the SIGTERM`)
    await waitUntilDead([node.pid], 20_000)
    t.same(await registeredNodes(gw, 'reg'), [], 'nothing is left in the registry')
  })

  t.test('a bad --registry is a usage error', async (t) => {
    const box = sandbox(t, 'register-bad')
    await t.rejects(startShardIn(box, { group: 'g1', nodeId: 'n', dataDir: join(box.tmp, 'g1'), port: 0, workers: 1, extraArgs: ['--registry', 'etcd://nohost'] }), /not host:port|exited/, 'refused at startup')
  })
}
