import t from 'tap'
import { computeLimit, computeRatio, computeRatios, LIMITS, RATIOS, type Measurement, type RatioSpec } from '../../bench/ratios'
import type { ScenarioId } from '../../bench/options'

function m (scenario: ScenarioId, name: string, reqPerSec: number, opts: { keysPerRequest?: number, errors?: number } = {}): Measurement {
  const k = opts.keysPerRequest ?? 1
  return {
    scenario,
    name,
    target: 'test',
    connections: 32,
    durationS: 5,
    requests: reqPerSec * 5,
    keys: reqPerSec * 5 * k,
    reqPerSec,
    keysPerSec: reqPerSec * k,
    latencyMs: { p50: 1, p99: 2, p999: 3, mean: 1, max: 4 },
    errors: opts.errors ?? 0,
    firstError: undefined
  }
}

const spec = (id: string): RatioSpec => {
  const s = RATIOS.find((r) => r.id === id)
  if (s === undefined) throw new Error(`no ratio ${id}`)
  return s
}

t.test('the four targets of issue 5 and the five ratio targets of issue 10', async (t) => {
  t.same(RATIOS.filter((r) => r.min !== undefined).map((r) => [r.id, r.min]), [
    ['routed-vs-nginx', 0.8],
    ['direct-vs-nginx', 1.0],
    ['batch-vs-single', 10],
    ['group-commit', 3],
    ['ycsb-insert-vs-etcd', 2],
    ['ycsb-a-vs-etcd', 2],
    ['ycsb-b-vs-etcd', 4],
    ['ycsb-c-vs-etcd', 4],
    ['ycsb-replica-cost', 0.7]
  ])
})

t.test('issue 10: YCSB ratios against etcd, redis and the unreplicated shape', async (t) => {
  const all = [
    m('ycsb', 'shardkv insert', 2000), m('ycsb', 'etcd insert', 1000), m('ycsb', 'unreplicated insert', 3000),
    m('ycsb', 'shardkv B', 3999), m('ycsb', 'etcd B', 1000), m('ycsb', 'redis B', 8000)
  ]
  const byId = new Map(computeRatios(all).map((r) => [r.id, r]))
  t.equal(byId.get('ycsb-insert-vs-etcd')?.verdict, 'pass', 'insert exactly 2× etcd passes')
  t.equal(byId.get('ycsb-b-vs-etcd')?.verdict, 'miss', 'B just under 4× misses')
  t.equal(byId.get('ycsb-replica-cost')?.value, 2000 / 3000)
  t.equal(byId.get('ycsb-replica-cost')?.verdict, 'miss', 'replicated 0.67× of unreplicated: a replica costs more than 0.3')
  t.equal(byId.get('ycsb-b-vs-redis')?.verdict, 'info', 'redis is for scale, no target')
  t.equal(byId.get('ycsb-a-vs-etcd')?.verdict, 'n/a', 'a target whose workload was not measured shows')
  t.notOk(byId.has('ycsb-a-vs-redis'), 'a ratio without a target and without measurements is left out')
})

t.test('issue 10: server CPU per replicated write is a ceiling', async (t) => {
  const cpu = (us: number | undefined, errors = 0): Measurement => ({ ...m('ycsb', 'shardkv insert', 500, { errors }), ...(us === undefined ? {} : { serverCpuUsPerOp: us }) })
  const limit = LIMITS.find((l) => l.id === 'ycsb-cpu-per-write')
  if (limit === undefined) throw new Error('no CPU limit')
  t.equal(limit.max, 600)
  t.same(computeLimit(limit, [cpu(600)]), { id: limit.id, label: limit.label, value: 600, min: undefined, max: 600, unit: 'µs', verdict: 'pass' }, 'exactly the ceiling passes')
  t.equal(computeLimit(limit, [cpu(601)]).verdict, 'miss')
  t.equal(computeLimit(limit, [cpu(undefined)]).verdict, 'n/a', 'no /proc: no verdict')
  t.equal(computeLimit(limit, [cpu(100, 3)]).verdict, 'n/a', 'a measurement with errors does not count')
  const listed = computeRatios([cpu(700)])
  t.equal(listed[0]?.id, 'ycsb-insert-vs-etcd', 'targets come first')
  t.ok(listed.some((r) => r.id === 'ycsb-cpu-per-write' && r.verdict === 'miss'), 'the limit is listed with the ratios')
})

t.test('pass, miss and the exact boundary', async (t) => {
  const peer = (router: number): Measurement[] => [m('peer', 'nginx GET', 1000), m('peer', 'router GET', router)]
  const pass = computeRatio(spec('routed-vs-nginx'), peer(900))
  t.equal(pass.value, 0.9)
  t.equal(pass.verdict, 'pass')
  t.equal(computeRatio(spec('routed-vs-nginx'), peer(800)).verdict, 'pass', 'exactly the target passes')
  const miss = computeRatio(spec('routed-vs-nginx'), peer(799))
  t.equal(miss.verdict, 'miss')
  t.equal(miss.min, 0.8)
})

t.test('batches compare keys/s, not requests/s', async (t) => {
  const all = [m('batch', 'GET', 2000), m('batch', 'batch GET', 250, { keysPerRequest: 100 })]
  const r = computeRatio(spec('batch-vs-single'), all)
  t.equal(r.value, 12.5, '25,000 keys/s against 2,000')
  t.equal(r.verdict, 'pass')
})

t.test('missing, failed or zero measurements give n/a, never a number', async (t) => {
  t.equal(computeRatio(spec('group-commit'), [m('group-commit', 'PUT group commit', 3000)]).verdict, 'n/a', 'baseline missing')
  const failed = computeRatio(spec('group-commit'), [m('group-commit', 'PUT group commit', 3000), m('group-commit', 'PUT 1 tx/write', 900, { errors: 3 })])
  t.equal(failed.value, null, 'a measurement with errors does not count')
  t.equal(failed.verdict, 'n/a')
  const zero = computeRatio(spec('group-commit'), [m('group-commit', 'PUT group commit', 3000), m('group-commit', 'PUT 1 tx/write', 0)])
  t.equal(zero.value, null)
  const info = computeRatio(spec('scaling-get'), [m('scaling', 'GET 1 group', 1000), m('scaling', 'GET 4 groups', 1500)])
  t.equal(info.value, 1.5)
  t.equal(info.verdict, 'info', 'no target: informational')
  t.equal(computeRatio(spec('scaling-get'), [m('scaling', 'GET 1 group', 1000)]).verdict, 'n/a')
})

t.test('computeRatios: only ratios whose scenarios ran, targets first', async (t) => {
  const all = [
    m('scaling', 'GET 1 group', 1000), m('scaling', 'GET 4 groups', 2000),
    m('scaling', 'PUT 1 group', 500), m('scaling', 'PUT 4 groups', 1500),
    m('group-commit', 'PUT group commit', 2700), m('group-commit', 'PUT 1 tx/write', 1000),
    m('group-commit', 'PUT group commit + request ids', 2430)
  ]
  const rs = computeRatios(all)
  t.same(rs.map((r) => r.id), ['group-commit', 'request-ids', 'scaling-get', 'scaling-put'])
  t.same(rs.map((r) => r.verdict), ['miss', 'info', 'info', 'info'])
  t.equal(rs[1]?.value, 0.9)
  t.equal(rs[3]?.value, 3)
  t.same(computeRatios([]), [], 'nothing ran, nothing to say')
})
