import t from 'tap'
import { availableParallelism } from 'node:os'
import { loadConfig, usage, ConfigError, SHARD_OPTIONS, ROUTER_OPTIONS, COORDINATOR_OPTIONS, MIB } from '../../src/config/options'

function configError (t: tap.Test, fn: () => unknown, what: string, pattern?: RegExp): void {
  try {
    const got = fn()
    t.fail(`${what}: expected ConfigError, got ${JSON.stringify(got)}`)
  } catch (err) {
    t.ok(err instanceof ConfigError, `${what}: ConfigError (${(err as Error).message})`)
    t.equal((err as ConfigError).code, 'ERR_SHARDKV_CONFIG', `${what}: code`)
    if (pattern !== undefined) t.match((err as Error).message, pattern, `${what}: message`)
  }
}

t.test('defaults', async (t) => {
  const shard = loadConfig(SHARD_OPTIONS, [], {})
  t.equal(shard.host, '127.0.0.1')
  t.equal(shard.port, 7001)
  t.equal(shard.dataDir, './data/shard')
  t.equal(shard.nodeId, '')
  t.equal(shard.workers, availableParallelism(), 'workers default is computed')
  t.equal(shard.synchronous, 'FULL')
  t.equal(shard.maxValueBytes, MIB)
  t.equal(shard.logLevel, 'info')
  const router = loadConfig(ROUTER_OPTIONS, [], {})
  t.equal(router.port, 8080)
  t.equal(router.coordinator, '')
  t.equal(router.maxValueBytes, MIB)
  const coordinator = loadConfig(COORDINATOR_OPTIONS, [], {})
  t.equal(coordinator.port, 8090)
  t.same(coordinator.groups, [])
  t.equal(coordinator.vnodes, 2048)
  t.equal(coordinator.dataDir, './data/coordinator')
})

t.test('flags win over env, env wins over defaults', async (t) => {
  const env = { SHARDKV_SHARD_PORT: '8000', SHARDKV_WORKERS: '3', SHARDKV_SYNCHRONOUS: 'NORMAL' }
  const fromEnv = loadConfig(SHARD_OPTIONS, [], env)
  t.equal(fromEnv.port, 8000, 'env over default')
  t.equal(fromEnv.workers, 3)
  t.equal(fromEnv.synchronous, 'NORMAL')
  const both = loadConfig(SHARD_OPTIONS, ['--port', '9000', '--workers=5'], env)
  t.equal(both.port, 9000, 'flag over env')
  t.equal(both.workers, 5, '--flag=value form')
  t.equal(both.synchronous, 'NORMAL', 'env still used where no flag')
  t.equal(loadConfig(SHARD_OPTIONS, [], { SHARDKV_SHARD_PORT: '' }).port, 7001, 'an empty env var means unset')
  t.equal(loadConfig(SHARD_OPTIONS, ['--port', '0'], {}).port, 0, 'port 0 is allowed')
  t.equal(loadConfig(SHARD_OPTIONS, ['--port', '1', '--port', '2'], {}).port, 2, 'the last repeated flag wins')
})

t.test('router and shard read their own env vars', async (t) => {
  const env = { SHARDKV_SHARD_PORT: '1111', SHARDKV_ROUTER_PORT: '2222' }
  t.equal(loadConfig(SHARD_OPTIONS, [], env).port, 1111)
  t.equal(loadConfig(ROUTER_OPTIONS, [], env).port, 2222)
})

t.test('choices are case-insensitive and normalized', async (t) => {
  t.equal(loadConfig(SHARD_OPTIONS, ['--synchronous', 'normal'], {}).synchronous, 'NORMAL')
  t.equal(loadConfig(SHARD_OPTIONS, ['--log-level', 'WARN'], {}).logLevel, 'warn')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--synchronous', 'sometimes'], {}), 'bad choice', /--synchronous/)
  configError(t, () => loadConfig(SHARD_OPTIONS, [], { SHARDKV_SYNCHRONOUS: 'x' }), 'bad choice from env', /SHARDKV_SYNCHRONOUS/)
})

t.test('list options: repeated flags or a comma-separated env var', async (t) => {
  const g = ['g1=http://127.0.0.1:7001', 'g2=http://127.0.0.1:7002@2']
  t.same(loadConfig(COORDINATOR_OPTIONS, ['--group', g[0]!, '--group', g[1]!], {}).groups, g)
  t.same(loadConfig(COORDINATOR_OPTIONS, [], { SHARDKV_GROUPS: ` ${g[0]!} , ${g[1]!},` }).groups, g)
  t.same(loadConfig(COORDINATOR_OPTIONS, ['--group', g[1]!], { SHARDKV_GROUPS: g[0]! }).groups, [g[1]], 'flag replaces env')
})

t.test('bad integers are ConfigErrors', async (t) => {
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port', 'abc'], {}), '--port abc', /--port/)
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port', '1.5'], {}), '--port 1.5')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port', '12x'], {}), '--port 12x')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port', ''], {}), '--port ""')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port=-1'], {}), '--port=-1 (below min)', /at least 0/)
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--workers', '0'], {}), '--workers 0 (below min)', /at least 1/)
  configError(t, () => loadConfig(SHARD_OPTIONS, [], { SHARDKV_WORKERS: 'many' }), 'SHARDKV_WORKERS=many', /SHARDKV_WORKERS/)
  configError(t, () => loadConfig(SHARD_OPTIONS, [], { SHARDKV_MAX_VALUE_BYTES: '1e6' }), 'SHARDKV_MAX_VALUE_BYTES=1e6')
  configError(t, () => loadConfig(ROUTER_OPTIONS, ['--health-interval-ms', '10'], {}), 'router --health-interval-ms 10 (below min)')
})

t.test('unknown flags and positionals are ConfigErrors', async (t) => {
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--no-such-flag'], {}), 'unknown flag')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['stray'], {}), 'positional argument')
  configError(t, () => loadConfig(SHARD_OPTIONS, ['--port'], {}), 'flag without a value')
})

t.test('usage lists every flag and env var', async (t) => {
  for (const [name, table] of [['shard', SHARD_OPTIONS], ['router', ROUTER_OPTIONS]] as const) {
    const text = usage(`node dist/${name}/main.js`, 'summary', table)
    for (const spec of Object.values(table)) {
      t.match(text, `--${spec.flag}`, `${name} usage has --${spec.flag}`)
      t.match(text, spec.env, `${name} usage has ${spec.env}`)
    }
  }
})

t.test('option tables are consistent', async (t) => {
  for (const [name, table] of [['shard', SHARD_OPTIONS], ['router', ROUTER_OPTIONS]] as const) {
    const flags = new Set<string>()
    const envs = new Set<string>()
    for (const spec of Object.values(table)) {
      t.notOk(flags.has(spec.flag), `${name}: --${spec.flag} is unique`)
      t.notOk(envs.has(spec.env), `${name}: ${spec.env} is unique`)
      flags.add(spec.flag)
      envs.add(spec.env)
      t.match(spec.env, /^SHARDKV_[A-Z0-9_]+$/, `${name}: ${spec.env} is namespaced`)
      t.ok(spec.help.length > 0, `${name}: --${spec.flag} has help`)
    }
  }
})
