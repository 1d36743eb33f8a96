import t from 'tap'
import { comparePage, describeFinding, mergeFindings, type Finding } from '../../scripts/shardkv/check-compare'
import { checkExitCode, renderCheck, unsettled, type GroupReport } from '../../scripts/shardkv/check'
import type { WireDigestPage, WireGroupDigest } from '../../src/protocol/digest'
import type { ClusterView } from '../../src/protocol/cluster-view'

const page = (extra: Partial<WireDigestPage> = {}): WireDigestPage => ({ epoch: 5, rows: 10, tombstones: 1, foreign: 0, foreignSample: [], digest: 'aa', last: 'k9', done: true, position: 20, ...extra })
const group = (replica: Partial<WireDigestPage> | { error: string }, primary: Partial<WireDigestPage> = {}): WireGroupDigest => ({
  group: 'g1',
  epoch: 5,
  after: '',
  until: 'k9',
  done: false,
  nodes: [
    { url: 'P', role: 'primary', page: page(primary) },
    'error' in replica ? { url: 'R', role: 'replica', error: replica.error } : { url: 'R', role: 'replica', page: page(replica) }
  ]
})

t.test('comparePage: what makes a page of a group inconsistent, or unchecked', async (t) => {
  const cases: Array<[string, WireGroupDigest, Array<Finding['kind']>]> = [
    ['equal digests and counts', group({}), []],
    ['another digest', group({ digest: 'bb' }), ['mismatch']],
    ['another count', group({ rows: 11 }), ['mismatch']],
    ['rows past the range the replica could not fit', group({ done: false }), ['mismatch']],
    ['a foreign row on the replica', group({ foreign: 2, foreignSample: ['x', 'y'] }), ['foreign']],
    ['a foreign row on the primary too (the digests still agree)', group({ foreign: 1 }, { foreign: 1 }), ['foreign', 'foreign']],
    ['a replica that judged by an older map', group({ epoch: 4 }), ['stale-map']],
    ['a replica that did not answer', group({ error: 'ECONNREFUSED' }), ['unreachable']]
  ]
  for (const [name, g, kinds] of cases) t.same(comparePage(g).map((f) => f.kind), kinds, name)
  t.match(comparePage(group({ rows: 9 }))[0], { kind: 'mismatch', node: 'R', after: '', until: 'k9', primaryRows: 10, rows: 9 })
  t.same(comparePage(group({ digest: 'bb' }), new Map([['R', 12]])), [{ kind: 'behind', group: 'g1', node: 'R', lag: 12 }], 'a replica not in sync yet differs without being inconsistent')
  t.same(comparePage(group({}), new Map([['R', 12]])), [], 'and is fine once equal')
})

t.test('mergeFindings sums foreign rows per node across pages and keeps one unreachable per node', async (t) => {
  const f: Finding[] = [
    { kind: 'foreign', group: 'g1', node: 'R', role: 'replica', count: 2, sample: ['a', 'b'] },
    { kind: 'foreign', group: 'g1', node: 'R', role: 'replica', count: 5, sample: ['c', 'd', 'e', 'f'] },
    { kind: 'unreachable', group: 'g1', node: 'S', error: 'x' },
    { kind: 'unreachable', group: 'g1', node: 'S', error: 'x' },
    { kind: 'mismatch', group: 'g1', node: 'R', after: '', until: 'k', primaryRows: 1, rows: 1 },
    { kind: 'mismatch', group: 'g1', node: 'R', after: 'k', until: null, primaryRows: 1, rows: 2 }
  ]
  const merged = mergeFindings(f)
  t.same(merged.map((m) => m.kind), ['foreign', 'unreachable', 'mismatch', 'mismatch'])
  t.match(merged[0], { count: 7, sample: ['a', 'b', 'c', 'd', 'e'] })
})

t.test('exit codes and lines: 3 for inconsistencies, 1 when something could not be checked, 0 otherwise', async (t) => {
  const report = (findings: Finding[]): GroupReport => ({ group: 'g1', nodes: 2, rows: 10, tombstones: 1, pages: 1, findings })
  t.equal(checkExitCode([report([])]), 0)
  t.equal(checkExitCode([report([{ kind: 'unreachable', group: 'g1', node: 'R', error: 'x' }])]), 1)
  t.equal(checkExitCode([report([{ kind: 'behind', group: 'g1', node: 'R', lag: 3 }])]), 1)
  t.equal(describeFinding({ kind: 'behind', group: 'g1', node: 'R', lag: 3 }), 'R (replica) is not in sync yet (lag 3): its rows were not compared; check again once it is')
  const mismatch: Finding = { kind: 'mismatch', group: 'g1', node: 'R', after: 'a', until: null, primaryRows: 3, rows: 4, near: 'b' }
  t.equal(checkExitCode([report([{ kind: 'unreachable', group: 'g1', node: 'S', error: 'x' }, mismatch])]), 3)
  t.equal(describeFinding(mismatch), 'R (replica) differs from the primary at "b" or just before it (keys after "a" to the end: 4 rows there, 3 on the primary)')
  t.equal(describeFinding({ ...mismatch, near: undefined, until: 'z' }), 'R (replica) differs from the primary in keys after "a" up to "z": 4 rows there, 3 on the primary')
  t.equal(describeFinding({ kind: 'foreign', group: 'g1', node: 'P', role: 'primary', count: 1, sample: ['k"1'] }), 'P (primary) holds 1 row its map gives to another group (e.g. "k\\"1")')
  t.equal(renderCheck([report([])], 9), 'g1: ok: 2 nodes, 10 rows (1 tombstones) in 1 page; every replica equals the primary; no foreign rows\ncheck: OK: 1 group, 10 rows, epoch 9\n')
  t.match(renderCheck([report([mismatch])], 9), /^g1: INCONSISTENT: .*\n {2}R \(replica\) differs.*\ncheck: INCONSISTENT: 1 group, 10 rows, epoch 9, 1 finding\n$/)
})

t.test('unsettled: no check while a rebalance moves rows', async (t) => {
  const base: ClusterView = { epoch: 1, ring: { vnodesPerWeight: 40, algorithm: 'md5' }, groups: [] }
  t.equal(unsettled(base), undefined)
  t.equal(unsettled({ ...base, rebalance: null }), undefined)
  t.match(unsettled({ ...base, rebalance: { id: 'r', kind: 'add', group: 'g2', phase: 'copying', scanned: 0, copied: 0, deleted: 0, estimatedRows: 0, keysPerSecond: 0, etaSeconds: null, percent: 0, startedAt: '' } }), /rebalance \(r\) is running \(copying\)/)
  t.match(unsettled({ ...base, handover: { previous: [] } }), /not settled/)
})
