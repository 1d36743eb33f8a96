import { QUICK_START_SHAPE } from '../src/local/quick-start'
import { intFlag, parseFlags, UsageError } from '../src/config/cli-flags'

/** Command line of `npm run bench`. Pure: parsing only, no I/O. */

export const SCENARIOS = ['footprint', 'routed', 'direct', 'node', 'batch', 'scaling', 'peer', 'group-commit', 'auth', 'ycsb'] as const
export type ScenarioId = typeof SCENARIOS[number]

export const YCSB_SYSTEMS = ['shardkv', 'direct', 'unreplicated', 'etcd', 'redis'] as const
export type YcsbSystem = typeof YCSB_SYSTEMS[number]

export interface BenchOptions {
  /** Seconds of measured load per measurement. */
  duration: number
  /** Most seconds of unmeasured load before each measurement; it ends early once the rate is steady. */
  warmup: number
  /** Concurrent request loops (each has one request in flight), the same for every measurement. */
  connections: number
  keys: number
  valueBytes: number
  /** Read fraction of the mixed measurement (0..1). */
  mix: number
  /** Groups of the routed, direct and batch scenarios. */
  groups: number
  /** Worker processes per shard node. */
  workers: number
  /** Keys per batch request. */
  batchSize: number
  /** YCSB: records inserted per system (the insert phase) and read or updated by the workloads. */
  records: number
  /** YCSB: closed loops of every YCSB measurement (fewer than --connections, as the issue measures). */
  ycsbConnections: number
  /** YCSB: measured seconds per workload. */
  ycsbDuration: number
  /** YCSB: most seconds of unmeasured inserts before the insert phase (until rate and CPU per insert settle). */
  ycsbWarmup: number
  /** YCSB: the systems to run it against, in this order. */
  ycsbSystems: YcsbSystem[]
  /** Scenarios to run, in suite order. */
  only: ScenarioId[]
  /** Start the peer and batch scenarios' routers under `node --cpu-prof`, profiles kept in this directory. */
  cpuProf: string | undefined
  /** Keep the temp dir (data and logs) for inspection. */
  keep: boolean
}

export const HELP = `Usage: npm run bench -- [options]      (or: node dist/bench/run.js [options])

Every scenario starts its own cluster in a temp dir on 127.0.0.1, preloads keys and
measures with the same closed-loop load: N loops, each awaiting one request at a time.
Scenarios (in this order; pick some with --only):
  footprint     idle memory of the quick-start cluster, started as npm start starts it
                (default workers, then --workers <cores>), beside a 3-member etcd's: every
                process of the tree, VmRSS, PSS and private pages summed from /proc
  routed        GET, PUT and a read/write mix through the router (--groups groups)
  direct        the same through the direct client (client-side ring, no router hop)
  node          GET and PUT straight to one shard node (the floor of the hop)
  batch         POST /batch of --batch-size keys through the router, as keys/s,
                against single-key GET and PUT keys/s in the same cluster
  scaling       routed GET and PUT with 1, 2, 3 and 4 groups
  peer          one shard node behind nginx (hash $request_uri consistent, keepalive),
                behind the router and under the direct client, back to back; then both
                again with read coalescing off (one upstream request per GET)
  group-commit  durable PUT (synchronous=FULL) with group commit versus
                --group-commit-max-ops 1 (one transaction per write); and with
                group commit, PUTs carrying request ids (the exactly-once record)
  auth          routed GET and PUT (--groups groups) plain, then with client tokens and
                the cluster secret, with an HTTPS client listener, and with both: the
                cost of the trust boundary, as ratios to the plain run
  ycsb          YCSB core workloads (insert of --records records after a warm-up on other
                keys, then A 50/50 read/update,
                B 95/5, C read only, F read-modify-write; scrambled zipfian keys) against
                shardkv as npm start runs it (${QUICK_START_SHAPE.groups} groups x primary + 1 replica, router,
                synchronous=FULL, no auth), the same cluster through the direct client
                (client-side ring, no router hop), shardkv without replicas, a 3-member etcd
                (Debian etcd-server, v3 JSON gateway) and redis-server (appendfsync
                always); both peers are started by the bench (apt-get installed when
                missing and root, else skipped); server CPU per op from /proc
Prints a table and the target ratios, and writes JSON to bench/results/.

Options:
  --duration S       measured seconds per measurement (default 5)
  --warmup S         most unmeasured seconds before each measurement; ends once three
                     1-second slices agree within 10% (default 5; 0 = none)
  --connections N    concurrent request loops (default 32)
  --keys N           keys preloaded per cluster (default 5000)
  --value-bytes N    value size in bytes (default 100)
  --mix F            read fraction of the mixed measurement, 0..1 (default 0.9)
  --groups N         groups of the routed, direct, batch and ycsb scenarios (default
                     ${QUICK_START_SHAPE.groups}: npm start's)
  --workers N        worker processes per shard node (default 1)
  --batch-size N     keys per batch (default 100)
  --only LIST        comma-separated scenarios to run (default: all)
  --records N        ycsb: records per system (default 10000)
  --ycsb-connections N  ycsb: concurrent loops (default 16)
  --ycsb-duration S  ycsb: measured seconds per workload (default 10; warm-up is
                     --warmup capped at 2 s)
  --ycsb-warmup S    ycsb: most seconds of inserts of other keys before the insert phase,
                     ended once three 2-s slices agree in rate and server CPU per insert
                     (default 30; 0: none)
  --ycsb-systems LIST  ycsb: comma-separated subset of shardkv,direct,unreplicated,etcd,redis
  --cpu-prof DIR     run the peer and batch scenarios' routers, and the ycsb scenario's
                     replicated shardkv (router and nodes), under node --cpu-prof, profiles in DIR
  --keep             keep the temp dir (data, logs) instead of removing it
  --help             show this text`

export { UsageError }

function fraction (name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!/^\d*\.?\d+$/.test(raw) || !(n >= 0 && n <= 1)) throw new UsageError(`--${name} must be a number from 0 to 1, got "${raw}"`)
  return n
}

export function parseScenarioList (raw: string | undefined): ScenarioId[] {
  if (raw === undefined) return [...SCENARIOS]
  const wanted = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (wanted.length === 0) throw new UsageError('--only needs at least one scenario')
  for (const w of wanted) {
    if (!(SCENARIOS as readonly string[]).includes(w)) {
      throw new UsageError(`--only: unknown scenario "${w}" (one of ${SCENARIOS.join(', ')})`)
    }
  }
  // Suite order, whatever order they were named in, so runs are comparable.
  return SCENARIOS.filter((s) => wanted.includes(s))
}

export function parseYcsbSystems (raw: string | undefined): YcsbSystem[] {
  if (raw === undefined) return [...YCSB_SYSTEMS]
  const wanted = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (wanted.length === 0) throw new UsageError('--ycsb-systems needs at least one system')
  for (const w of wanted) {
    if (!(YCSB_SYSTEMS as readonly string[]).includes(w)) throw new UsageError(`--ycsb-systems: unknown system "${w}" (one of ${YCSB_SYSTEMS.join(', ')})`)
  }
  return YCSB_SYSTEMS.filter((s) => wanted.includes(s))
}

export function parseBenchOptions (argv: string[]): BenchOptions | 'help' {
  const values = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    keep: { type: 'boolean' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    keys: { type: 'string' },
    'value-bytes': { type: 'string' },
    mix: { type: 'string' },
    workers: { type: 'string' },
    groups: { type: 'string' },
    'batch-size': { type: 'string' },
    only: { type: 'string' },
    records: { type: 'string' },
    'ycsb-connections': { type: 'string' },
    'ycsb-duration': { type: 'string' },
    'ycsb-warmup': { type: 'string' },
    'ycsb-systems': { type: 'string' },
    'cpu-prof': { type: 'string' }
  })
  if (values.help === true) return 'help'
  const cpuProf = values['cpu-prof']
  if (cpuProf === '') throw new UsageError('--cpu-prof needs a directory')
  return {
    duration: intFlag('duration', values.duration, 5, 1, 3600),
    warmup: intFlag('warmup', values.warmup, 5, 0, 600),
    connections: intFlag('connections', values.connections, 32, 1, 4096),
    keys: intFlag('keys', values.keys, 5000, 1, 10_000_000),
    // 1 MiB is the servers' default value limit.
    valueBytes: intFlag('value-bytes', values['value-bytes'], 100, 0, 1024 * 1024),
    mix: fraction('mix', values.mix, 0.9),
    workers: intFlag('workers', values.workers, 1, 1, 64),
    groups: intFlag('groups', values.groups, QUICK_START_SHAPE.groups, 1, 64),
    // 1000 is the servers' default --max-batch-ops.
    batchSize: intFlag('batch-size', values['batch-size'], 100, 1, 1000),
    records: intFlag('records', values.records, 10_000, 1, 10_000_000),
    ycsbConnections: intFlag('ycsb-connections', values['ycsb-connections'], 16, 1, 4096),
    ycsbDuration: intFlag('ycsb-duration', values['ycsb-duration'], 10, 1, 3600),
    ycsbWarmup: intFlag('ycsb-warmup', values['ycsb-warmup'], 30, 0, 600),
    ycsbSystems: parseYcsbSystems(values['ycsb-systems']),
    only: parseScenarioList(values.only),
    cpuProf,
    keep: values.keep === true
  }
}
