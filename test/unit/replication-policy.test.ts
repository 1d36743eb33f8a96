import t from 'tap'
import { replicatedPosition, choosePromotion, mayFailOver, leaseStep, nextLeaseRoundMs, renewalIntervalMs, judgeShipment, judgeSwitchover, keepsDataAfterHandoff, type SwitchoverState } from '../../src/replication/policy'
import { promote, setInSync, addReplica, removeReplica, ReplicationMapError } from '../../src/replication/map-changes'
import { initialMap, termOf, type ClusterMap } from '../../src/membership/map'
import { Ownership } from '../../src/membership/ownership'

const P = 'http://127.0.0.1:7001'
const R1 = 'http://127.0.0.1:7101'
const R2 = 'http://127.0.0.1:7201'

function group (): ClusterMap {
  return initialMap([{ id: 'g1', url: P, weight: 1, replicas: [R1, R2] }, { id: 'g2', url: 'http://127.0.0.1:7002', weight: 1 }])
}

t.test('replicatedPosition waits for every replica of the ack set, and only those', async (t) => {
  const acks = [{ url: R1, acked: 10 }, { url: R2, acked: 4 }]
  t.equal(replicatedPosition(12, acks, new Set([R1, R2])), 4, 'the slowest in-sync replica bounds it')
  t.equal(replicatedPosition(12, acks, new Set([R1])), 10, 'an out-of-sync replica is not waited for')
  t.equal(replicatedPosition(12, acks, new Set()), 12, 'no replica to wait for: the primary position')
  t.equal(replicatedPosition(12, [{ url: R1, acked: -1 }], new Set([R1])), -1, 'an unknown position acknowledges nothing')
})

t.test('choosePromotion: in-sync, healthy, highest position, deterministic', async (t) => {
  t.equal(choosePromotion([
    { url: R1, inSync: true, healthy: true, position: 7 },
    { url: R2, inSync: true, healthy: true, position: 9 }
  ]), R2)
  t.equal(choosePromotion([
    { url: R1, inSync: true, healthy: true, position: 7 },
    { url: R2, inSync: false, healthy: true, position: 99 }
  ]), R1, 'never an out-of-sync replica, however far ahead it looks')
  t.equal(choosePromotion([{ url: R1, inSync: true, healthy: false, position: 7 }]), undefined, 'never an unhealthy one')
  t.equal(choosePromotion([{ url: R1, inSync: true, healthy: true, position: null }]), undefined, 'never one whose position is unknown')
  t.equal(choosePromotion([
    { url: R2, inSync: true, healthy: true, position: 5 },
    { url: R1, inSync: true, healthy: true, position: 5 }
  ]), R1, 'ties break by url')
})

t.test('mayFailOver needs a failed renewal and the end of the last lease the primary may hold', async (t) => {
  t.notOk(mayFailOver(0, 999, 1000), 'it took its latest renewal')
  t.notOk(mayFailOver(3, 2000, 1000), 'the primary may still hold a lease')
  t.notOk(mayFailOver(3, 1000, 1000), 'its lease ends exactly now: it refuses from now on, promote only after')
  t.ok(mayFailOver(1, 999, 1000), 'one refused renewal is enough once the lease has ended')
  t.ok(mayFailOver(3, 999, 1000))
})

t.test('renewalIntervalMs: four renewals per lease', async (t) => {
  t.equal(renewalIntervalMs(800), 200)
  t.equal(renewalIntervalMs(1500), 375)
  t.equal(renewalIntervalMs(100), 25)
  t.equal(renewalIntervalMs(50), 25, 'never a busy loop')
})

t.test('nextLeaseRoundMs: an interval on, or just past a failing primary\'s lease end', async (t) => {
  t.equal(nextLeaseRoundMs(1000, 200, []), 200, 'nobody failing')
  t.equal(nextLeaseRoundMs(1000, 200, [1050]), 51, 'the lease ends within the interval: one ms past its end')
  t.equal(nextLeaseRoundMs(1000, 200, [1500]), 200, 'the lease ends later: the interval')
  t.equal(nextLeaseRoundMs(1000, 200, [1150, 1050]), 51, 'the earliest end')
  t.equal(nextLeaseRoundMs(1000, 200, [900, 999]), 200, 'an end already past (probed this round): the interval, never a spin')
})

t.test('judgeShipment', async (t) => {
  const replica = { groupTerm: 2, dataTerm: 2, position: 10 }
  t.equal(judgeShipment({ term: 2, from: 10 }, replica), 'apply')
  t.equal(judgeShipment({ term: 2, from: 8 }, replica), 'gap')
  t.equal(judgeShipment({ term: 1, from: 10 }, replica), 'reject', 'a deposed primary is fenced')
  t.equal(judgeShipment({ term: 3, from: 10 }, replica), 'reject', 'a term the replica has not installed yet')
  t.equal(judgeShipment({ term: 2, from: 10 }, { ...replica, dataTerm: 1 }), 'resync', 'data from an older term is discarded')
})

t.test('promote: new term, old primary and other replicas out of sync', async (t) => {
  const before = setInSync(setInSync(group(), 'g1', R1, true, 1), 'g1', R2, true, 1)
  const after = promote(before, 'g1', R2)
  const g = after.groups.find((x) => x.id === 'g1')
  t.equal(after.epoch, before.epoch + 1)
  t.equal(g !== undefined ? termOf(g) : 0, 2)
  t.same(g?.nodes, [
    { url: R2, role: 'primary' },
    { url: P, role: 'replica', inSync: false },
    { url: R1, role: 'replica', inSync: false }
  ])
  t.equal(new Ownership(after, 'g1', R2).role, 'primary')
  t.equal(new Ownership(after, 'g1', P).role, 'replica', 'the old primary learns it is a replica')
  t.ok(new Ownership(after, 'g1', R2).needsLease, 'a primary with replicas serves under a lease')
  t.notOk(new Ownership(after, 'g2', 'http://127.0.0.1:7002').needsLease, 'a lone primary needs none')
  t.throws(() => promote(after, 'g1', 'http://127.0.0.1:9999'), ReplicationMapError)
})

t.test('setInSync checks the term: a deposed primary cannot change the set', async (t) => {
  const m = group()
  const marked = setInSync(m, 'g1', R1, true, 1)
  t.equal(marked.groups[0]?.nodes.find((n) => n.url === R1)?.inSync, true)
  t.equal(setInSync(marked, 'g1', R1, true, 1), marked, 'no change, no new epoch')
  try {
    setInSync(promote(marked, 'g1', R1), 'g1', R2, false, 1)
    t.fail('expected stale_term')
  } catch (err) {
    t.equal((err as ReplicationMapError).code, 'stale_term')
  }
})

t.test('addReplica / removeReplica', async (t) => {
  const m = addReplica(group(), 'g2', 'http://127.0.0.1:7102/')
  t.same(m.groups[1]?.nodes[1], { url: 'http://127.0.0.1:7102', role: 'replica', inSync: false })
  t.throws(() => addReplica(m, 'g1', 'http://127.0.0.1:7102'), ReplicationMapError, 'a node serves one group')
  const back = removeReplica(m, 'g2', 'http://127.0.0.1:7102')
  t.equal(back.groups[1]?.nodes.length, 1)
  t.throws(() => removeReplica(m, 'g2', 'http://127.0.0.1:7002'), ReplicationMapError, 'the primary cannot be removed')
})

t.test('judgeSwitchover: who may take over, and every refusal', async (t) => {
  const nodes = [
    { url: P, role: 'primary' as const },
    { url: R1, role: 'replica' as const, inSync: true },
    { url: R2, role: 'replica' as const, inSync: false }
  ]
  const up = (): boolean => true
  const base: SwitchoverState = { nodes, to: undefined, busy: undefined, healthy: up }
  const rows: Array<[string, Partial<SwitchoverState>, string]> = [
    ['picks the in-sync replica', {}, `ok ${R1}`],
    ['takes the named in-sync replica', { to: R1 }, `ok ${R1}`],
    ['refuses a named replica that is not in sync', { to: R2 }, 'conflict'],
    ['refuses a url that is not a replica', { to: 'http://127.0.0.1:9999' }, 'invalid_request'],
    ['refuses naming the primary', { to: P }, 'invalid_request'],
    ['unknown group', { nodes: undefined }, 'no_such_group'],
    ['no replica at all', { nodes: [{ url: P, role: 'primary' }] }, 'conflict'],
    ['no in-sync replica', { nodes: [nodes[0]!, nodes[2]!] }, 'conflict'],
    ['the in-sync replica is down', { healthy: (u) => u !== R1 }, 'conflict'],
    ['the named replica is down', { to: R1, healthy: (u) => u !== R1 }, 'conflict'],
    ['the primary is down: a failover, not a switchover', { healthy: (u) => u !== P }, 'conflict'],
    ['a rebalance is running', { busy: 'rebalance' }, 'rebalance_running'],
    ['a switchover is running', { busy: 'switchover' }, 'conflict'],
    ['picks the lowest url among several in-sync replicas', { nodes: [nodes[0]!, { url: R2, role: 'replica', inSync: true }, nodes[1]!] }, `ok ${R1}`]
  ]
  for (const [name, change, want] of rows) {
    const d = judgeSwitchover({ ...base, ...change })
    t.equal(d.ok ? `ok ${d.to}` : d.code, want, name)
    if (d.ok) t.equal(d.from, P, `${name}: from the primary`)
  }
})

t.test('keepsDataAfterHandoff: only the recorded term, primary and position', async (t) => {
  const h = { term: 3, primary: R1, position: 40 }
  const rows: Array<[string, Parameters<typeof keepsDataAfterHandoff>, boolean]> = [
    ['exactly the handoff', [h, { term: 3 }, { primary: R1, position: 40 }], true],
    ['no handoff recorded', [undefined, { term: 3 }, { primary: R1, position: 40 }], false],
    ['another term (a later failover)', [h, { term: 4 }, { primary: R1, position: 40 }], false],
    ['another node promoted to that term', [h, { term: 3 }, { primary: R2, position: 40 }], false],
    ['written past the handoff (an abandoned switchover)', [h, { term: 3 }, { primary: R1, position: 41 }], false],
    ['no primary known', [h, { term: 3 }, { primary: undefined, position: 40 }], false]
  ]
  for (const [name, args, want] of rows) t.equal(keepsDataAfterHandoff(...args), want, name)
})

t.test('leaseStep: renew, resume a slow primary, wait out the lease, then probe', async (t) => {
  const now = 10_000
  const table: Array<{ name: string, failures: number, until: number, answeredSince: boolean, want: string }> = [
    { name: 'no missed renewal', failures: 0, until: now + 1500, answeredSince: false, want: 'renew' },
    { name: 'no missed renewal, lease over (a stalled coordinator renews late)', failures: 0, until: now - 500, answeredSince: false, want: 'renew' },
    { name: 'fewer misses than the threshold', failures: 2, until: now + 1500, answeredSince: false, want: 'renew' },
    { name: 'one refused renewal, lease still running', failures: 1, until: now + 1, answeredSince: false, want: 'renew' },
    { name: 'one refused renewal, lease over: decided from the lease end, not the count', failures: 1, until: now - 1, answeredSince: false, want: 'probe' },
    { name: 'one miss, lease ends exactly now', failures: 1, until: now, answeredSince: false, want: 'renew' },
    { name: 'enough misses, lease still running', failures: 3, until: now + 1, answeredSince: false, want: 'wait' },
    { name: 'enough misses, lease ends exactly now', failures: 3, until: now, answeredSince: false, want: 'wait' },
    { name: 'enough misses, lease over', failures: 3, until: now - 1, answeredSince: false, want: 'probe' },
    { name: 'enough misses but it answered a health check since', failures: 5, until: now - 1, answeredSince: true, want: 'resume' },
    { name: 'answered since, lease still running', failures: 3, until: now + 500, answeredSince: true, want: 'resume' }
  ]
  for (const r of table) t.equal(leaseStep({ failures: r.failures, threshold: 3, until: r.until, answeredSince: r.answeredSince }, now), r.want, r.name)
})
