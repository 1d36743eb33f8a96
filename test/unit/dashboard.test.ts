import t from 'tap'
import { bucketsOf, parsePrometheus, quantile, shardReading, trafficBetween, withoutObservation, type Buckets } from '../../coordinator/dashboard/traffic'
import { OperationLog } from '../../coordinator/dashboard/operations'
import { viewerOf } from '../../coordinator/dashboard'
import type { ClusterView, GroupView, NodeView } from '../../src/protocol/cluster-view'

// The dashboard's pure parts: rates and p99 from Prometheus histograms, and the
// operations it reads off successive cluster views.

const buckets = (pairs: Array<[number, number]>): Buckets => new Map(pairs)

t.test('parsePrometheus reads samples with labels, skipping comments and other names', async (t) => {
  const text = [
    '# HELP x_bucket whatever',
    'x_bucket{le="0.005",method="GET"} 3',
    'x_bucket{le="+Inf",method="GET"} 4',
    'x_bucket{method="PUT",le="+Inf"} 2',
    'y_total 9',
    'x_count{method="GET"} 4'
  ].join('\n')
  const samples = parsePrometheus(text, (n) => n.startsWith('x_'))
  t.equal(samples.length, 4)
  t.same(samples[0], { name: 'x_bucket', labels: { le: '0.005', method: 'GET' }, value: 3 })
  t.same([...bucketsOf(samples, 'x')], [[0.005, 3], [Infinity, 6]], 'summed over the other labels')
})

t.test('quantile interpolates inside the bucket, as histogram_quantile does', async (t) => {
  const before = buckets([[0.001, 0], [0.01, 0], [Infinity, 0]])
  t.equal(quantile(before, buckets([[0.001, 0], [0.01, 0], [Infinity, 0]]), 0.99), null, 'nothing observed')
  t.equal(quantile(before, buckets([[0.001, 100], [0.01, 100], [Infinity, 100]]), 0.99), 0.00099)
  t.equal(quantile(before, buckets([[0.001, 50], [0.01, 100], [Infinity, 100]]), 0.5), 0.001)
  t.equal(quantile(before, buckets([[0.001, 0], [0.01, 0], [Infinity, 10]]), 0.99), 0.01, '+Inf answers the highest finite bound')
  t.ok(Math.abs((quantile(buckets([[0.001, 100], [0.01, 100], [Infinity, 100]]), buckets([[0.001, 100], [0.01, 200], [Infinity, 200]]), 0.5) ?? 0) - 0.0055) < 1e-12, 'only the delta counts')
})

t.test('trafficBetween: rate, p99 in ms, and nothing across a counter reset', async (t) => {
  const a = { atMs: 0, count: 10, buckets: buckets([[0.001, 0], [0.01, 0], [Infinity, 0]]) }
  const b = { atMs: 2000, count: 30, buckets: buckets([[0.001, 0], [0.01, 20], [Infinity, 20]]) }
  t.same(trafficBetween(a, b), { perSecond: 10, p99Ms: 9.9 })
  t.same(trafficBetween(a, { ...b, count: 10 }), { perSecond: 0, p99Ms: null }, 'no operations: no p99 (only health checks were timed)')
  t.equal(trafficBetween(b, a), null)
})

t.test('a scrape is taken out of the interval that timed it', async (t) => {
  t.same([...withoutObservation(buckets([[0.001, 5], [0.01, 7], [Infinity, 8]]), 0.004)], [[0.001, 5], [0.01, 6], [Infinity, 7]])
  const text = 'shardkv_shard_reads_total 5\nshardkv_shard_writes_total 2\nshardkv_shard_http_request_duration_seconds_bucket{le="+Inf",method="GET"} 9\n'
  const r = shardReading(text, 1)
  t.equal(r.count, 7, 'reads plus writes')
  t.same([...r.buckets], [[Infinity, 9]])
})

t.test('viewerOf: no principal means an open router, admin included', async (t) => {
  t.same(viewerOf(null), { name: null, admin: true })
  t.same(viewerOf({ name: 'r', roles: new Set(['read']), prefix: undefined }), { name: 'r', admin: false })
  t.same(viewerOf({ name: 'a', roles: new Set(['read', 'admin']), prefix: undefined }), { name: 'a', admin: true })
})

function node (url: string, role: 'primary' | 'replica', health: NodeView['health'] = 'up', inSync = true): NodeView {
  return { url, role, ...(role === 'replica' ? { inSync } : {}), lag: 0, health, pid: 1, nodeId: url, position: 1, lastCheckAt: null, lastError: null }
}
function view (groups: Array<{ id: string, term: number, nodes: NodeView[] }>): ClusterView {
  return {
    epoch: 1,
    ring: { vnodesPerWeight: 1, algorithm: 'md5' },
    groups: groups.map((g): GroupView => ({ ...g, weight: 1, state: 'active', points: 1, inSyncReplicas: 1, redundancy: 'ok' }))
  }
}

t.test('OperationLog: a failover pending while the primary is down, done when a replica is promoted', async (t) => {
  const log = new OperationLog(() => new Date('2026-01-01T00:00:00Z'))
  log.observe(view([{ id: 'g1', term: 1, nodes: [node('a', 'primary'), node('b', 'replica')] }]))
  t.same(log.list(), [])
  log.observe(view([{ id: 'g1', term: 1, nodes: [node('a', 'primary', 'down'), node('b', 'replica')] }]))
  t.match(log.list(), [{ kind: 'failover', state: 'pending', group: 'g1', from: 'a', to: null }])
  log.observe(view([{ id: 'g1', term: 2, nodes: [node('b', 'primary'), node('a', 'replica', 'down', false)] }]))
  t.match(log.list(), [{ kind: 'failover', state: 'done', group: 'g1', from: 'a', to: 'b', term: 2 }])
})

t.test('OperationLog: a switchover is not reported again as a failover; replicas joining and leaving', async (t) => {
  const log = new OperationLog()
  const before = view([{ id: 'g1', term: 1, nodes: [node('a', 'primary'), node('b', 'replica')] }])
  log.observe(before)
  log.switchoverStarted('g1', before)
  t.match(log.list(), [{ kind: 'switchover', state: 'running', from: 'a' }])
  const after = view([{ id: 'g1', term: 2, nodes: [node('b', 'primary'), node('a', 'replica')] }])
  log.observe(after)
  log.switchoverEnded('g1', true, '', after)
  log.observe(after)
  t.match(log.list(), [{ kind: 'switchover', state: 'done', from: 'a', to: 'b', term: 2 }])
  t.equal(log.list().length, 1, 'no failover')
  log.observe(view([{ id: 'g1', term: 2, nodes: [node('b', 'primary'), node('a', 'replica'), node('c', 'replica', 'up', false)] }]))
  log.observe(view([{ id: 'g1', term: 2, nodes: [node('b', 'primary'), node('c', 'replica', 'up', false)] }]))
  t.match(log.list().slice(0, 2), [{ kind: 'replica', detail: /a removed/ }, { kind: 'replica', detail: /c added/ }])
  log.switchoverStarted('g1', after)
  log.switchoverEnded('g1', false, 'no in-sync replica', after)
  t.match(log.list()[0], { kind: 'switchover', state: 'failed', detail: 'no in-sync replica' })
})
