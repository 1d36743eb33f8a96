import t from 'tap'
import { parseBenchOptions, parseScenarioList, SCENARIOS, UsageError, type BenchOptions } from '../../bench/options'
import { QUICK_START_SHAPE } from '../../src/local/quick-start'

function opts (argv: string[]): BenchOptions {
  const o = parseBenchOptions(argv)
  if (o === 'help') throw new Error('unexpected help')
  return o
}

function usageError (t: tap.Test, argv: string[], pattern: RegExp): void {
  try {
    const got = parseBenchOptions(argv)
    t.fail(`${argv.join(' ')}: expected a UsageError, got ${JSON.stringify(got)}`)
  } catch (err) {
    t.ok(err instanceof UsageError, `${argv.join(' ')}: UsageError`)
    t.match((err as Error).message, pattern, `${argv.join(' ')}: message`)
  }
}

t.test('defaults are sized for a few minutes on a small machine', async (t) => {
  const o = opts([])
  t.same(o, {
    duration: 5,
    warmup: 5,
    connections: 32,
    keys: 5000,
    valueBytes: 100,
    mix: 0.9,
    workers: 1,
    groups: QUICK_START_SHAPE.groups,
    batchSize: 100,
    records: 10_000,
    ycsbConnections: 16,
    ycsbDuration: 10,
    ycsbWarmup: 30,
    ycsbSystems: ['shardkv', 'direct', 'unreplicated', 'etcd', 'redis'],
    only: [...SCENARIOS],
    cpuProf: undefined,
    keep: false
  })
})

t.test('the ycsb options', async (t) => {
  const o = opts(['--only', 'ycsb', '--records', '500', '--ycsb-connections', '4', '--ycsb-duration', '3', '--ycsb-warmup', '0', '--ycsb-systems', 'redis,shardkv'])
  t.same(o.only, ['ycsb'])
  t.equal(o.records, 500)
  t.equal(o.ycsbConnections, 4)
  t.equal(o.ycsbDuration, 3)
  t.equal(o.ycsbWarmup, 0, '--ycsb-warmup 0: no insert warm-up')
  t.same(o.ycsbSystems, ['shardkv', 'redis'], 'run order, not the order given')
  t.throws(() => opts(['--ycsb-systems', 'mongodb']), /unknown system "mongodb"/)
  t.throws(() => opts(['--records', '0']), /--records must be an integer/)
})

t.test('every option parses', async (t) => {
  const o = opts(['--duration', '3', '--warmup', '0', '--connections', '8', '--keys', '200', '--value-bytes', '1024',
    '--mix', '0.5', '--workers', '2', '--groups', '4', '--batch-size', '10', '--only', 'peer,routed', '--cpu-prof', '/tmp/prof', '--keep'])
  t.equal(o.duration, 3)
  t.equal(o.warmup, 0)
  t.equal(o.connections, 8)
  t.equal(o.keys, 200)
  t.equal(o.valueBytes, 1024)
  t.equal(o.mix, 0.5)
  t.equal(o.workers, 2)
  t.equal(o.groups, 4)
  t.equal(o.batchSize, 10)
  t.same(o.only, ['routed', 'peer'], 'suite order, not the order given')
  t.equal(o.cpuProf, '/tmp/prof')
  t.equal(o.keep, true)
  t.equal(parseBenchOptions(['--help']), 'help')
  t.equal(parseBenchOptions(['-h', '--duration', 'x']), 'help', 'help wins over bad values')
})

t.test('--mix takes fractions from 0 to 1', async (t) => {
  t.equal(opts(['--mix', '0']).mix, 0)
  t.equal(opts(['--mix', '1']).mix, 1)
  t.equal(opts(['--mix', '.75']).mix, 0.75)
  usageError(t, ['--mix', '1.5'], /--mix must be a number from 0 to 1/)
  usageError(t, ['--mix', '-0.1'], /--mix/)
  usageError(t, ['--mix', 'half'], /--mix/)
  usageError(t, ['--mix', ''], /--mix/)
})

t.test('bad values are usage errors naming the option', async (t) => {
  usageError(t, ['--duration', '0'], /--duration must be an integer from 1/)
  usageError(t, ['--duration', '1.5'], /--duration/)
  usageError(t, ['--connections', '-1'], /--connections/)
  usageError(t, ['--keys', '1e3'], /--keys/)
  usageError(t, ['--batch-size', '1001'], /--batch-size must be an integer from 1 to 1000/)
  usageError(t, ['--value-bytes', String(2 * 1024 * 1024)], /--value-bytes/)
  usageError(t, ['--groups', '0'], /--groups/)
  usageError(t, ['--cpu-prof', ''], /--cpu-prof needs a directory/)
  usageError(t, ['--nope'], /nope/)
  usageError(t, ['positional'], /positional/)
  usageError(t, ['--duration'], /duration/)
})

t.test('--only names scenarios', async (t) => {
  t.same(parseScenarioList(undefined), SCENARIOS)
  t.same(parseScenarioList('group-commit, batch'), ['batch', 'group-commit'])
  t.same(parseScenarioList('peer,peer'), ['peer'], 'a repeat runs once')
  t.throws(() => parseScenarioList('routed,nginx'), /unknown scenario "nginx"/)
  t.throws(() => parseScenarioList(' , '), /at least one scenario/)
})
