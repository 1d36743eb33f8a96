import t from 'tap'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { sleep, waitFor } from '../harness/cluster'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { EtcdLeadership } from '../../src/registry/etcd/leadership'
import { EtcdRegistry, clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { EtcdWatch, type WatchedChange } from '../../src/registry/etcd/watch'
import { RegistryConflict } from '../../src/registry/registry'
import { initialMap, type ClusterMap } from '../../src/membership/map'
import type { RebalanceState } from '../../src/membership/rebalance'

/**
 * The etcd registry against real etcd members (Debian etcd-server): the leader key and
 * its fence, guarded map writes that a deposed or racing coordinator cannot make, a
 * leader cut off from etcd that stops acting before a rival is elected, and map
 * watches that survive a member's death and report a compacted resume point.
 */

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('leadership: one leader, fenced writes, a deposed leader changes nothing', async (t) => {
    const etcd = await startEtcd(t, { members: 1, name: 'leader' })
    const gws = [new EtcdGateway({ endpoints: etcd.endpoints }), new EtcdGateway({ endpoints: etcd.endpoints })]
    t.teardown(async () => { await Promise.all(gws.map(async (g) => await g.close())) })
    const keys = clusterKeys('t1')
    const a = new EtcdLeadership(gws[0] as EtcdGateway, { key: keys.leader, candidate: 'http://a', ttlSeconds: 2 })
    const b = new EtcdLeadership(gws[1] as EtcdGateway, { key: keys.leader, candidate: 'http://b', ttlSeconds: 2 })
    t.teardown(async () => { await a.resign(); await b.resign() })

    const fenceA = await a.campaign()
    t.ok(a.isLeader() && fenceA > 0, `a leads at fence ${fenceA}`)
    let bLed = false
    const bCampaign = b.campaign().then((f) => { bLed = true; return f })
    await sleep(3000) // longer than the TTL: a's renewals keep b out
    t.notOk(bLed, 'b does not lead while a renews its lease')
    t.same(await a.leader(), { candidate: 'http://a', fence: fenceA }, 'etcd names a as the leader')

    const regA = new EtcdRegistry({ gateway: gws[0] as EtcdGateway, cluster: 't1', guard: () => a.guard() })
    const regB = new EtcdRegistry({ gateway: gws[1] as EtcdGateway, cluster: 't1', guard: () => b.guard() })
    const m1 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
    await regA.load()
    await regA.savePending(m1)
    t.same((await regA.load()).pending, m1, 'the intent is recorded')
    await regA.publish(m1)
    const state = await regA.load()
    t.same([state.map?.epoch, state.pending], [m1.epoch, undefined], 'published: the map is set and the intent cleared in one transaction')

    const rebalanceState = { id: 'r1', kind: 'add', group: 'g2', phase: 'copying', fromEpoch: m1.epoch } as unknown as RebalanceState
    await regA.saveRebalance(rebalanceState)
    t.same(await regB.loadRebalance(), rebalanceState, 'the leader persists the rebalance state; anyone reads it')
    await regB.load()
    await t.rejects(regB.publish({ ...m1, epoch: m1.epoch + 1 }), RegistryConflict, 'a non-leader\'s write is refused')

    // a resigns (as when its lease ends): b leads at a higher fence; a's writes are refused.
    const stale = { ...m1, epoch: m1.epoch + 1 }
    await a.resign()
    const fenceB = await bCampaign
    t.ok(fenceB > fenceA, `b leads at fence ${fenceB} > ${fenceA}`)
    await t.rejects(regA.publish(stale), RegistryConflict, 'the deposed leader changes nothing')
    await t.rejects(regA.saveRebalance(rebalanceState), RegistryConflict, 'not even the rebalance state')
    await regB.load()
    await regB.publish(stale)
    t.equal((await regB.load()).map?.epoch, stale.epoch, 'the new leader writes')

    // A writer whose base is stale (someone published since its read) is refused too.
    const regB2 = new EtcdRegistry({ gateway: gws[1] as EtcdGateway, cluster: 't1', guard: () => b.guard() })
    await regB2.load()
    await regB.publish({ ...stale, epoch: stale.epoch + 1 })
    await t.rejects(regB2.publish({ ...stale, epoch: stale.epoch + 1 }), RegistryConflict, 'a write on a stale read is refused')
  })

  t.test('a leader cut off from etcd stops acting before a rival is elected', async (t) => {
    const etcd = await startEtcd(t, { members: 3, name: 'cutoff' })
    // a reaches etcd only through member 0; b through the other two.
    const gwA = new EtcdGateway({ endpoints: [etcd.endpoints[0] as string], timeoutMs: 1000 })
    const gwB = new EtcdGateway({ endpoints: etcd.endpoints.slice(1), timeoutMs: 1000 })
    t.teardown(async () => { await gwA.close(); await gwB.close() })
    const keys = clusterKeys('t2')
    let aDeposedAt = 0
    const a = new EtcdLeadership(gwA, { key: keys.leader, candidate: 'http://a', ttlSeconds: 3, onEvent: (e) => { if (e === 'deposed') aDeposedAt = Date.now() } })
    const b = new EtcdLeadership(gwB, { key: keys.leader, candidate: 'http://b', ttlSeconds: 3 })
    t.teardown(async () => { await a.resign(); await b.resign() })
    await a.campaign()
    const bCampaign = b.campaign().then(() => Date.now())
    await sleep(500)

    const cutAt = Date.now()
    await etcd.kill(0)
    // Sample a's own judgement until b leads: a must have stopped first.
    let aStoppedAt = 0
    const watcher = (async () => {
      while (aStoppedAt === 0) {
        if (!a.isLeader()) aStoppedAt = Date.now()
        await sleep(20)
      }
    })()
    const bLedAt = await bCampaign
    await watcher
    t.comment(`a stopped acting ${aStoppedAt - cutAt} ms after the cut (deposed event at +${aDeposedAt === 0 ? '?' : aDeposedAt - cutAt} ms); b led at +${bLedAt - cutAt} ms`)
    t.ok(aStoppedAt > 0 && aStoppedAt < bLedAt, 'a stopped acting before b was elected')
    t.equal(a.fence, 0, 'a carries no fence once it stopped')
  })

  t.test('map watch: every publish in order, across a member\'s death; a compacted resume point is reported', async (t) => {
    const etcd = await startEtcd(t, { members: 3, name: 'watch' })
    const writer = new EtcdGateway({ endpoints: etcd.endpoints.slice(1) })
    // The follower starts on member 0, which is killed half-way.
    const reader = new EtcdGateway({ endpoints: etcd.endpoints })
    t.teardown(async () => { await writer.close(); await reader.close() })
    const keys = clusterKeys('t3')
    const lead = new EtcdLeadership(writer, { key: keys.leader, candidate: 'http://c', ttlSeconds: 5 })
    t.teardown(async () => { await lead.resign() })
    await lead.campaign()
    const reg = new EtcdRegistry({ gateway: writer, cluster: 't3', guard: () => lead.guard() })
    await reg.load()
    const follower = new EtcdRegistry({ gateway: reader, cluster: 't3' })
    const seen: number[] = []
    const w = follower.watch(0, (m) => seen.push(m.epoch))
    t.teardown(async () => { await w.close() })

    let map: ClusterMap = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
    const publish = async (): Promise<void> => {
      map = { ...map, epoch: map.epoch + 1 }
      await reg.publish(map)
    }
    for (let i = 0; i < 20; i++) await publish()
    await waitFor(() => seen.at(-1) === map.epoch, 20_000, () => `follower saw ${seen.join(',')}`)
    await etcd.kill(0)
    for (let i = 0; i < 20; i++) await publish()
    await waitFor(() => seen.at(-1) === map.epoch, 30_000, () => `follower saw ${seen.join(',')}`)
    const expected = Array.from({ length: seen.length }, (_, i) => (seen[0] as number) + i)
    t.same(seen, expected, `the follower saw ${seen.length} maps in order, none skipped, none twice (epochs ${seen[0]}..${seen.at(-1)})`)

    // A raw watch from a revision compacted away says so.
    const rev = (await writer.range(keys.map)).revision
    await writer.call('/v3/kv/compaction', { revision: String(rev), physical: true }, false)
    let compactedAt = -1
    const changes: WatchedChange[] = []
    const raw = new EtcdWatch(writer, keys.map, { startRevision: 2 }, { onChanges: (c) => changes.push(...c), onCompacted: (r) => { compactedAt = r } })
    t.teardown(async () => { await raw.close() })
    await waitFor(() => compactedAt >= 0, 10_000, () => 'no compaction report')
    t.equal(compactedAt, rev, `resuming from revision 2 is refused: compacted at ${rev}`)
    t.same(changes, [], 'and nothing was delivered in its place')
  })
}

