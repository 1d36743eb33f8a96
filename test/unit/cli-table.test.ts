import t from 'tap'
import { renderTable } from '../../scripts/shardkv/table'
import { rebalanceLine, renderStatus, statusRows } from '../../scripts/shardkv/status'
import type { ClusterView, NodeView } from '../../src/protocol/cluster-view'
import type { RebalanceProgress } from '../../src/membership/rebalance'

const node = (url: string, role: 'primary' | 'replica', extra: Partial<NodeView> = {}): NodeView => ({
  url, role, lag: role === 'primary' ? null : 0, health: 'up', pid: 1, nodeId: 'n', position: 42, lastCheckAt: null, lastError: null, ...(role === 'replica' ? { inSync: true } : {}), ...extra
})

const view: ClusterView = {
  epoch: 7,
  ring: { vnodesPerWeight: 40, algorithm: 'md5' },
  groups: [
    { id: 'g1', weight: 1, state: 'active', term: 3, points: 160, inSyncReplicas: 1, redundancy: 'ok', nodes: [node('http://127.0.0.1:7001', 'primary'), node('http://127.0.0.1:7101', 'replica', { lag: 5, inSync: false })] },
    { id: 'g2', weight: 2, state: 'draining', term: 1, points: 0, inSyncReplicas: 0, redundancy: 'unreplicated', nodes: [node('http://127.0.0.1:7002', 'primary', { health: 'down', position: null, lastError: 'connect ECONNREFUSED' })] }
  ],
  rebalance: null
}

t.test('renderTable draws etcdctl-style borders, pads to the widest cell and aligns right where asked', async (t) => {
  const out = renderTable([{ header: 'NAME', cell: (r: [string, number]) => r[0] }, { header: 'N', cell: (r) => String(r[1]), align: 'right' }], [['a', 1], ['longer', 100]])
  t.equal(out, [
    '+--------+-----+',
    '| NAME   | N   |',
    '+--------+-----+',
    '| a      |   1 |',
    '| longer | 100 |',
    '+--------+-----+',
    ''
  ].join('\n'))
  const empty = renderTable([{ header: 'X', cell: (r: string) => r }], [])
  t.equal(empty.split('\n').length, 5, 'no rows: borders and header only')
  const hostile = renderTable([{ header: 'X', cell: (r: string) => r }], ['a|b\nc'])
  t.equal(hostile.split('\n')[3], '| a b c |', 'a cell cannot break the table with a pipe or a newline')
})

t.test('statusRows: one row per node with its group\'s term, lag and in-sync for replicas only', async (t) => {
  const rows = statusRows(view)
  t.equal(rows.length, 3)
  t.match(rows[0], { group: 'g1', node: 'http://127.0.0.1:7001', role: 'primary', term: 3, lag: null, inSync: null, epoch: 7 })
  t.match(rows[1], { group: 'g1', role: 'replica', lag: 5, inSync: false })
  t.match(rows[2], { group: 'g2', state: 'draining', health: 'down', position: null, lastError: 'connect ECONNREFUSED' })
})

t.test('renderStatus: summary, table, rebalance line, errors of nodes that are not up', async (t) => {
  const lines = renderStatus(view).trimEnd().split('\n')
  t.equal(lines[0], 'epoch 7, 2 groups, 3 nodes')
  t.equal(lines[1], lines[3], 'bordered header')
  t.match(lines[2], /^\| GROUP \| STATE +\| NODE +\| ROLE +\| TERM \| POSITION \| LAG \| IN SYNC \| HEALTH \| EPOCH \|$/)
  const cells = (line: string | undefined): string[] => (line ?? '').split('|').slice(1, -1).map((c) => c.trim())
  t.same(cells(lines[4]), ['g1', 'active', 'http://127.0.0.1:7001', 'primary', '3', '42', '-', '-', 'up', '7'])
  t.same(cells(lines[5]), ['g1', 'active', 'http://127.0.0.1:7101', 'replica', '3', '42', '5', 'false', 'up', '7'])
  t.same(cells(lines[6]), ['g2', 'draining', 'http://127.0.0.1:7002', 'primary', '1', '-', '-', '-', 'down', '7'])
  t.equal(lines[8], 'rebalance: none since the router started')
  t.equal(lines[9], 'http://127.0.0.1:7002: connect ECONNREFUSED')
})

t.test('rebalanceLine: running, done', async (t) => {
  const p: RebalanceProgress = { id: 'add-g3-8', kind: 'add', group: 'g3', phase: 'copying', scanned: 10, copied: 4, deleted: 0, estimatedRows: 50, keysPerSecond: 100, etaSeconds: 1, percent: 20, startedAt: 'x' }
  t.equal(rebalanceLine(p), 'rebalance: add-g3-8 (add g3) copying 20%, 10/50 rows scanned')
  t.equal(rebalanceLine({ ...p, phase: 'done', finishedAt: 'T', copied: 17, deleted: 17 }), 'rebalance: add-g3-8 (add g3) done at T, 17 rows copied, 17 purged')
  t.match(rebalanceLine({ ...p, lastError: 'boom' }), /; last error: boom$/)
})
