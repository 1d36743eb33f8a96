import t from 'tap'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { netnsAvailable, startNetwork } from '../harness/netns'
import { sleep, waitFor } from '../harness/cluster'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { EtcdLeadership } from '../../src/registry/etcd/leadership'
import { EtcdRegistry, clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { RegistryConflict } from '../../src/registry/registry'
import { initialMap, type ClusterMap } from '../../src/membership/map'

/**
 * Real partitions (network namespaces, a link taken down: packets dropped, so peers see
 * timeouts, not refusals) between three etcd members, each on a host of its own:
 *  - a coordinator that reaches etcd only through the member that is cut off stops acting
 *    before a rival is elected, and nothing it writes afterwards lands;
 *  - a map follower whose stream was on the cut-off member (open, silent, no error) moves to
 *    another member and misses no map.
 */


if (!etcdAvailable() || !netnsAvailable()) {
  t.pass('skipped: needs etcd (etcd-server) and root with iproute2 for network namespaces; .ci/run installs both')
} else {
  t.test('a leader partitioned from etcd stops before a rival leads; its later writes do not land', async (t) => {
    const net = startNetwork(t, { hosts: 3 })
    const etcd = await startEtcd(t, { members: 3, name: 'partition-leader', network: net })
    const gwA = new EtcdGateway({ endpoints: [etcd.endpoints[0] as string], timeoutMs: 1000 })
    const gwB = new EtcdGateway({ endpoints: etcd.endpoints.slice(1), timeoutMs: 1000 })
    t.teardown(async () => { await gwA.close(); await gwB.close() })
    const keys = clusterKeys('p1')
    const a = new EtcdLeadership(gwA, { key: keys.leader, candidate: 'http://a', ttlSeconds: 3 })
    const b = new EtcdLeadership(gwB, { key: keys.leader, candidate: 'http://b', ttlSeconds: 3 })
    t.teardown(async () => { await a.resign(); await b.resign() })
    await a.campaign()
    const regA = new EtcdRegistry({ gateway: gwA, cluster: 'p1', guard: () => a.guard() })
    await regA.load()
    const m1 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
    await regA.publish(m1)
    const bLeads = b.campaign().then(() => Date.now())

    net.cut(net.hosts[0]!)
    const cutAt = Date.now()
    let aStoppedAt = 0
    while (aStoppedAt === 0 && Date.now() - cutAt < 30_000) {
      if (!a.isLeader()) aStoppedAt = Date.now()
      await sleep(20)
    }
    const bLedAt = await bLeads
    t.comment(`a stopped acting ${aStoppedAt - cutAt} ms after the cut; b led ${bLedAt - cutAt} ms after it`)
    t.ok(aStoppedAt > 0 && aStoppedAt < bLedAt, 'the cut-off leader stopped acting before the rival was elected')

    // What a still believes is not what etcd holds: a write of a's is refused or never arrives.
    const late: ClusterMap = { ...m1, epoch: m1.epoch + 1 }
    const outcome = await regA.publish(late).then(() => 'applied', (err: Error) => err instanceof RegistryConflict ? 'conflict' : `error: ${err.message}`)
    t.not(outcome, 'applied', `a's write after the cut: ${outcome}`)
    net.heal(net.hosts[0]!)
    // A member rejoining after the heal may call an election: a read can time out meanwhile.
    const loadB = async (): Promise<Awaited<ReturnType<EtcdRegistry['load']>>> => await waitFor(async () => await new EtcdRegistry({ gateway: gwB, cluster: 'p1' }).load().catch(() => undefined), 30_000, 'etcd answers a read through b\'s members')
    const seen = await loadB()
    t.equal(seen.map?.epoch, m1.epoch, 'etcd still holds the map a published before the cut')
    await sleep(3000) // a's request, if any was held in the cut link, would land now
    t.equal((await loadB()).map?.epoch, m1.epoch, 'and after the link is back')
  })

  t.test('a map follower on a member that is cut off moves to another and misses nothing', async (t) => {
    const net = startNetwork(t, { hosts: 3 })
    const etcd = await startEtcd(t, { members: 3, name: 'partition-watch', network: net })
    const writer = new EtcdGateway({ endpoints: etcd.endpoints.slice(1) })
    const reader = new EtcdGateway({ endpoints: etcd.endpoints, timeoutMs: 1000 })
    t.teardown(async () => { await writer.close(); await reader.close() })
    const keys = clusterKeys('p2')
    const lead = new EtcdLeadership(writer, { key: keys.leader, candidate: 'http://c', ttlSeconds: 5 })
    t.teardown(async () => { await lead.resign() })
    await lead.campaign()
    const reg = new EtcdRegistry({ gateway: writer, cluster: 'p2', guard: () => lead.guard() })
    await reg.load()
    let map: ClusterMap = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
    await reg.publish(map)
    const seen: number[] = []
    const w = new EtcdRegistry({ gateway: reader, cluster: 'p2' }).watch(0, (m) => seen.push(m.epoch))
    t.teardown(async () => { await w.close() })
    await waitFor(() => seen.at(-1) === map.epoch, 20_000, () => `saw ${seen.join(',')}`)
    t.equal(reader.endpoint(), etcd.endpoints[0], 'the follower streams from member 0')

    net.cut(net.hosts[0]!)
    const cutAt = Date.now()
    for (let i = 0; i < 10; i++) {
      map = { ...map, epoch: map.epoch + 1 }
      await reg.publish(map)
    }
    await waitFor(() => seen.at(-1) === map.epoch, 30_000, () => `saw ${seen.join(',')} (want ${map.epoch})`)
    t.comment(`the follower had the last map ${Date.now() - cutAt} ms after the cut`)
    const expected = Array.from({ length: seen.length }, (_, i) => (seen[0] as number) + i)
    t.same(seen, expected, `every map in order, none skipped, none twice (${seen[0]}..${seen.at(-1)})`)
    net.heal(net.hosts[0]!)
  })
}
