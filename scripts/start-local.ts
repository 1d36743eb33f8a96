import { existsSync, renameSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { MapFile } from '../src/membership/map-file'
import { groupIds } from '../src/local/cluster'
import { QUICK_START_SHAPE } from '../src/local/quick-start'
import { ManagedCluster } from '../src/local/managed-cluster'
import { NODES_FILE, readLauncherState, processAlive, readNodes, readNodesFile, type NodeEntry } from '../src/local/nodes-file'
import { describeEvent } from '../src/local/supervised'
import { PROCESS_RESTART_POLICY } from '../src/supervision/restart-policy'
import { assertPortsFree, PortBusyError } from '../src/local/ports'
import { ensureCredentials } from '../src/local/credentials'
import { decideLocalTls } from '../src/local/certificates'
import { shown, summary, type Credentials } from '../src/local/summary'
import { decideShape, parseEtcdFlag, readShape, ShapeError, writeShape, MAX_CONTROL_PROCESSES, type EtcdShape, type ShapeFlags } from '../src/local/control-shape'
import { etcdPlaneOf, type EtcdPlane } from '../src/local/etcd-plane'
import { etcdAvailable } from '../src/local/etcd-members'

/**
 * `npm start`: the default local cluster — N shard nodes (groups g1..gN), a coordinator
 * and a router, all on 127.0.0.1, data and logs under ./data. Data survives restarts: shard
 * nodes reopen their SQLite files and the coordinator loads its persisted cluster map. The nodes
 * run are those of ./data/nodes.json (written from the flags on a first start, edited
 * by add-shard and friends); every one is supervised (src/local/managed-cluster.ts).
 * Secure by default: every process gets the cluster secret and the tokens file of
 * the data dir (src/local/credentials.ts), made on the first start.
 */

const HOST = '127.0.0.1'
/** How long the summary waits to name the leading coordinator (the launcher has waited for one already). */
const LEADER_SUMMARY_WAIT_MS = 15_000

/** The help text; `usage` is how the command is invoked (npm start --, shardkv start). */
const help = (usage: string): string => `Usage: ${usage} [options]        (or: node dist/scripts/start-local.js [options])

Starts a local shardkv cluster on ${HOST}: one shard node per group (g1..gN, group i on
base-port + i - 1), a coordinator (router port + 10) and a router in front of them. A
process that exits unexpectedly is restarted from its data directory (back-off; given up
after a crash loop). Nodes added with add-shard / add-replica run under this launcher too.
Ctrl-C stops the router, the coordinator, then the shards. Data stays in the data directory, so the next start serves the
same keys and runs the same nodes (listed in <data-dir>/nodes.json, written on the first
start from --groups, --replicas and --workers). Each process also gets a peer port for
the internal API (its port + 10000; kept in nodes.json).

Secure by default: the first start creates <data-dir>/cluster-secret (what the processes
authenticate each other with), <data-dir>/tokens.json (client tokens, hashes only; every part
re-reads it within a second of an edit) and an admin token, printed once and kept in
<data-dir>/admin-token (mode 0600). Send it as \`Authorization: Bearer <token>\`; the scripts
(add-shard, ...) read it from there.

Options:
  --data-dir DIR      data and logs (default ./data: ./data/g1, ./data/coordinator, ./data/logs)
  --router-port N     router port (default 8080)
  --base-port N       first shard node port (default 7001)
  --groups N          number of shard groups (default ${QUICK_START_SHAPE.groups}; first start only)
  --replicas N        replica nodes per group (default ${QUICK_START_SHAPE.replicas}; first start only; replica j of group i
                      on base-port + 100*j + i - 1)
  --workers N         worker processes per shard node (default 0: each node serves in its own process;
                      first start only)
  --restart-delay-ms N  wait before restarting a process that died (default 500; later crashes back
                      off 1, 2, 4, 8 s; the 6th within two minutes gives up). Longer than a failover
                      (about 3 s) makes a killed primary always come back as a replica.
  --tls               HTTPS on every listener and mutual TLS between the processes, with a CA
                      and certificate made by openssl in <data-dir>/tls on the first start
                      (clients trust <data-dir>/tls/ca.pem); kept on every later start
  --insecure          start without the cluster secret and tokens file (anyone on this machine
                      can use the cluster; for comparisons and benchmarks)
  --processes         run the router and the coordinator as processes of their own (default: as
                      threads of this launcher, which saves two Node processes' memory; a process
                      can be signalled and killed on its own; file registry only; see
                      docs/operations.md)

The control plane on etcd (kept in <data-dir>/control-plane.json: a later start without these
flags runs the same shape):
  --registry etcd     keep the map in etcd: coordinators campaign for its leader key (one leads,
                      the others stand by), routers and nodes find it there. Without --etcd, three
                      etcd members run here (the etcd binary, Debian's etcd-server) on router
                      port + 100..105, data in <data-dir>/etcd/e0..e2, stopped last
  --etcd URL[,URL]    use this etcd instead (its client URLs; implies --registry etcd)
  --coordinators N    coordinators (default 2; coordinator i on router port + 10 + i - 1, data in
                      <data-dir>/coordinator-i)
  --routers N         routers (default 1; router j on router port + j - 1)
  --registry file     the default: the map in <data-dir>/coordinator, one coordinator, one router

  --help              show this text`

interface StartOptions {
  dataDir: string
  routerPort: number
  basePort: number
  groups: number
  replicas: number
  workers: number | undefined
  restartDelayMs: number
  insecure: boolean
  tls: boolean
  /** --processes: the router and the coordinator as processes, not threads of the launcher. */
  processes: boolean
  /** What the flags say about the control plane (decided against the data dir in prepare). */
  shape: ShapeFlags
}

class UsageError extends Error {}

function intFlag (name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`)
  }
  return Number(raw)
}

function parseOptions (argv: string[]): StartOptions | 'help' {
  let values
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        'data-dir': { type: 'string' },
        'router-port': { type: 'string' },
        'base-port': { type: 'string' },
        groups: { type: 'string' },
        replicas: { type: 'string' },
        workers: { type: 'string' },
        'restart-delay-ms': { type: 'string' },
        insecure: { type: 'boolean' },
        tls: { type: 'boolean' },
        processes: { type: 'boolean' },
        registry: { type: 'string' },
        etcd: { type: 'string' },
        coordinators: { type: 'string' },
        routers: { type: 'string' }
      }
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help === true) return 'help'
  const opts: StartOptions = {
    dataDir: resolve(values['data-dir'] ?? './data'),
    routerPort: intFlag('router-port', values['router-port'], 8080, 1, 65525),
    basePort: intFlag('base-port', values['base-port'], 7001, 1, 65535),
    groups: intFlag('groups', values.groups, QUICK_START_SHAPE.groups, 1, 64),
    replicas: intFlag('replicas', values.replicas, QUICK_START_SHAPE.replicas, 0, 4),
    workers: values.workers === undefined ? undefined : intFlag('workers', values.workers, 0, 0, 256),
    restartDelayMs: intFlag('restart-delay-ms', values['restart-delay-ms'], PROCESS_RESTART_POLICY.firstDelayMs, 0, 600_000),
    insecure: values.insecure === true,
    tls: values.tls === true,
    processes: values.processes === true,
    shape: shapeFlags(values)
  }
  // Peer mutual TLS without the secret would be half a trust boundary; --insecure means none.
  if (opts.tls && opts.insecure) throw new UsageError('--tls and --insecure do not go together')
  if (opts.groups > 100) throw new UsageError('--groups must be at most 100 (replica ports are base-port + 100*j)')
  if (opts.basePort + 100 * opts.replicas + opts.groups - 1 > 65535) throw new UsageError('--base-port + --groups runs past port 65535')
  const shardPorts = opts.basePort + opts.groups - 1
  if (opts.routerPort >= opts.basePort && opts.routerPort <= shardPorts) {
    throw new UsageError(`--router-port ${opts.routerPort} collides with the shard ports ${opts.basePort}-${shardPorts}`)
  }
  return opts
}

function shapeFlags (values: { registry?: string, etcd?: string, coordinators?: string, routers?: string }): ShapeFlags {
  const { registry, etcd, coordinators, routers } = values
  if (registry !== undefined && registry !== 'file' && registry !== 'etcd') throw new UsageError(`--registry must be file or etcd, got "${registry}"`)
  let endpoints: string[] | undefined
  try {
    endpoints = etcd === undefined ? undefined : parseEtcdFlag(etcd)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  return {
    ...(registry === undefined ? {} : { registry }),
    ...(endpoints === undefined ? {} : { etcd: endpoints }),
    ...(coordinators === undefined ? {} : { coordinators: intFlag('coordinators', coordinators, 0, 1, MAX_CONTROL_PROCESSES) }),
    ...(routers === undefined ? {} : { routers: intFlag('routers', routers, 0, 1, MAX_CONTROL_PROCESSES) })
  }
}

/**
 * A restart with other ports or groups cannot take effect: the coordinator ignores --group
 * flags once it has a persisted map. Say so before the user wonders why.
 */
function warnIfMapDiffers (routerDir: string, planned: Map<string, string>): void {
  let map
  try {
    map = new MapFile(routerDir).load()
  } catch (err) {
    console.warn(`warning: cannot read the persisted cluster map in ${shown(routerDir)}: ${(err as Error).message}`)
    return
  }
  if (map === undefined) return
  const persisted = new Map(map.groups.map((g) => [g.id, g.nodes.find((n) => n.role === 'primary')?.url ?? '?']))
  const same = persisted.size === planned.size && [...planned].every(([id, url]) => persisted.get(id) === url)
  if (same) return
  console.warn(`warning: the coordinator's persisted map (epoch ${map.epoch}) lists ${[...persisted].map(([id, url]) => `${id}=${url}`).join(', ')},`)
  console.warn(`         not the groups started now; the coordinator keeps using its map. Remove ${shown(routerDir)} to start afresh.`)
}

/** The nodes of a first start, from the flags: group i's replica j on base-port + 100*j + i. */
function initialNodes (opts: StartOptions): NodeEntry[] {
  return groupIds(opts.groups).flatMap((group, i) => Array.from({ length: 1 + opts.replicas }, (_, j) => {
    const name = j === 0 ? group : `${group}-r${j}`
    return { name, group, port: opts.basePort + 100 * j + i, dataDir: join(opts.dataDir, name), ...(opts.workers === undefined ? {} : { workers: opts.workers }) }
  }))
}

function say (line: string): void {
  console.log(`start-local: ${line}`)
}

/** The coordinator listens 10 above the router (8090 beside 8080): its admin API, which the router relays. */
function coordinatorPortOf (opts: StartOptions): number {
  return opts.routerPort + 10
}

/** The supervised cluster, printing one line per supervisor event (first starts are in the summary). */
function managedCluster (opts: StartOptions, logDir: string, creds: Credentials | undefined, etcd: EtcdPlane | undefined): ManagedCluster {
  const tls = creds?.tls === undefined ? {} : { tlsCertFile: creds.tls.cert, tlsKeyFile: creds.tls.key, tlsCaFile: creds.tls.ca }
  return new ManagedCluster({
    ...(creds === undefined ? {} : { credentials: { clusterSecretFile: creds.clusterSecretFile, tokensFile: creds.tokensFile, ...tls } }),
    ...(etcd === undefined ? {} : { etcd }),
    controlThreads: !opts.processes,
    dataDir: opts.dataDir,
    host: HOST,
    routerPort: opts.routerPort,
    coordinatorPort: coordinatorPortOf(opts),
    logDir,
    policy: { ...PROCESS_RESTART_POLICY, firstDelayMs: opts.restartDelayMs },
    onEvent: (e) => {
      const line = describeEvent(e, (name) => shown(join(logDir, `${name}.log`)))
      if (e.event === 'started' && !e.restart) return
      if (e.event === 'crashed' || e.event === 'gave-up') console.error(`start-local: ${line}`)
      else say(line)
    },
    onNotice: say
  })
}

/**
 * A data dir from before the coordinator was its own process keeps the map in
 * <data>/router: it becomes <data>/coordinator, once, so the cluster keeps its map.
 */
function moveRouterDir (dataDir: string): void {
  const old = join(dataDir, 'router')
  const now = join(dataDir, 'coordinator')
  if (!existsSync(join(old, 'cluster.json')) || existsSync(now)) return
  renameSync(old, now)
  say(`moved the cluster map from ${shown(old)} to ${shown(now)} (the coordinator keeps it now)`)
}

/** The nodes file's nodes; on a first start, the flags' (written as the nodes file). */
function nodesToRun (cluster: ManagedCluster, opts: StartOptions): NodeEntry[] {
  moveRouterDir(opts.dataDir)
  const hadNodesFile = readNodes(opts.dataDir) !== undefined
  if (!hadNodesFile) warnIfMapDiffers(join(opts.dataDir, 'coordinator'), new Map(initialNodes(opts).filter((n) => n.name === n.group).map((n) => [n.group, cluster.urlOf(n)])))
  const nodes = cluster.desiredNodes(initialNodes(opts))
  if (hadNodesFile) say(`running the ${nodes.length} shard nodes listed in ${shown(join(opts.dataDir, NODES_FILE))} (--groups and --replicas apply to a first start only)`)
  return nodes
}

/**
 * The control plane on etcd, when the flags or the data dir's control-plane.json say so
 * (src/local/control-shape.ts decides); undefined: the file registry.
 */
function controlShape (opts: StartOptions): EtcdShape | undefined {
  const fileMap = ['coordinator', 'router'].some((d) => existsSync(join(opts.dataDir, d, 'cluster.json')))
  const { shape, notices } = decideShape(opts.shape, readShape(opts.dataDir), { fileMap, routerPort: opts.routerPort })
  for (const n of notices) say(n)
  if (shape?.members !== undefined && !etcdAvailable()) {
    throw new ShapeError('--registry etcd runs etcd\'s members here, but there is no etcd on PATH: install it (apt-get install etcd-server), or give --etcd URL of a running one')
  }
  return shape
}

/** Refuses ports planned twice, past 65535 or already in use, in one sentence; true when all are fine. */
async function portsUsable (planned: ReadonlyArray<{ name: string, port: number | undefined }>): Promise<boolean> {
  const ports = planned.filter((p): p is { name: string, port: number } => p.port !== undefined)
  const clash = ports.find((p, i) => ports.findIndex((q) => q.port === p.port) !== i)
  if (clash !== undefined) {
    console.error(`start-local: port ${clash.port} is planned for both ${ports.find((q) => q.port === clash.port)?.name ?? '?'} and ${clash.name}; choose other ports with --router-port / --base-port`)
    return false
  }
  const high = ports.find((p) => p.port > 65535)
  if (high !== undefined) {
    console.error(`start-local: ${high.name} would listen on port ${high.port}, past 65535; choose a lower --router-port`)
    return false
  }
  try {
    await assertPortsFree(HOST, ports)
  } catch (err) {
    if (!(err instanceof PortBusyError)) throw err
    console.error(`start-local: ${err.message}.\nStop what uses ${err.busy.length === 1 ? 'it' : 'them'} (another \`npm start\`?) or choose other ports with --router-port / --base-port.`)
    return false
  }
  return true
}

/** The data dir's credentials and TLS files (created on a first start), or undefined with --insecure. */
function credentials (opts: StartOptions): Credentials | undefined {
  const file = readNodesFile(opts.dataDir)
  if (opts.insecure) {
    if (file?.tls === true) throw new Error(`${shown(opts.dataDir)} holds a cluster started with --tls: it needs its credentials (drop --insecure)`)
    say('--insecure: no cluster secret, no client tokens; anything on this machine can read and change the cluster')
    return undefined
  }
  const creds = ensureCredentials(opts.dataDir)
  for (const w of creds.warnings) console.warn(`start-local: warning: ${w}`)
  const tls = decideLocalTls(opts.dataDir, opts.tls, { exists: file !== undefined, tls: file?.tls === true })
  if (tls?.created === true) say(`made a local CA and a certificate for 127.0.0.1 in ${shown(tls.dir)} (clients trust ${shown(tls.ca)})`)
  return { ...creds, ...(tls === undefined ? {} : { tls }) }
}

/** Everything before the first process starts; an exit code when the cluster must not start. */
async function prepare (opts: StartOptions, logDir: string): Promise<{ cluster: ManagedCluster, nodes: NodeEntry[], creds: Credentials | undefined, etcd: boolean } | number> {
  const previous = readLauncherState(opts.dataDir)
  if (previous !== undefined && processAlive(previous.pid) && previous.pid !== process.pid) {
    console.error(`start-local: a launcher (pid ${previous.pid}) already runs this cluster in ${shown(opts.dataDir)}`)
    return 1
  }
  let creds: Credentials | undefined
  let cluster: ManagedCluster
  let nodes: NodeEntry[]
  let shape: EtcdShape | undefined
  try {
    shape = controlShape(opts)
    creds = credentials(opts)
    cluster = managedCluster(opts, logDir, creds, shape === undefined ? undefined : etcdPlaneOf(shape, opts.dataDir, HOST))
    nodes = nodesToRun(cluster, opts)
  } catch (err) {
    console.error(`start-local: ${(err as Error).message}`)
    return 1
  }
  if (!await portsUsable(cluster.plannedPorts(nodes))) return 1
  // Only now: a first start refused for its ports must not pin etcd's members to them.
  if (shape !== undefined) writeShape(opts.dataDir, shape)
  return { cluster, nodes, creds, etcd: shape !== undefined }
}

/**
 * `npm start` and `shardkv start`: `args` are the command's arguments. Resolves with an
 * exit code when the cluster cannot start; once it runs, only a signal ends it (exiting the process).
 */
export async function startLocal (args: string[], usage = 'npm start --'): Promise<number> {
  let opts: StartOptions | 'help'
  try {
    opts = parseOptions(args)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`start-local: ${err.message}\n(see --help)`)
    return 2
  }
  if (opts === 'help') {
    console.log(help(usage))
    return 0
  }
  const logDir = join(opts.dataDir, 'logs')
  const prepared = await prepare(opts, logDir)
  if (typeof prepared === 'number') return prepared
  const { cluster, nodes, creds, etcd } = prepared
  const dataDir = opts.dataDir

  // Children run in their own process group (detached) so Ctrl-C reaches only us and we
  // stop them in order. A stop cancels every pending restart first.
  let stopping = false
  const shutdown = async (why: string): Promise<never> => {
    if (stopping) {
      // A second Ctrl-C: do not wait for draining. The launcher's exit hook SIGKILLs what is left.
      console.error('start-local: stopping now (killing what is left)')
      process.exit(1)
    }
    stopping = true
    console.log(`\n${why}: stopping the ${etcd ? 'routers, the coordinators, the shard nodes, then etcd' : 'router, the coordinator, then the shard nodes'}...`)
    await cluster.stop().catch((err: unknown) => console.error(`start-local: ${(err as Error).message}`))
    console.log(`stopped. Data kept in ${shown(dataDir)}.`)
    process.exit(0)
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => { void shutdown(sig) })

  console.log(`starting ${etcd ? 'etcd, ' : ''}${nodes.length} shard node${nodes.length === 1 ? '' : 's'}, ${etcd ? 'the coordinators and the routers' : 'a coordinator and a router'} (logs in ${shown(logDir)})...`)
  try {
    await cluster.start(nodes)
  } catch (err) {
    if (stopping) return 0
    console.error(`start-local: the cluster did not start: ${(err as Error).message}`)
    await cluster.stop().catch(() => undefined)
    return 1
  }
  if (stopping) return 0
  const control = etcd ? { leader: await cluster.leader(LEADER_SUMMARY_WAIT_MS), waitedMs: LEADER_SUMMARY_WAIT_MS } : undefined
  if (stopping) return 0
  console.log(summary(cluster, dataDir, logDir, creds, control))
  // Runs until a signal: the supervisors' children and the nodes-file poll keep the event loop alive.
  return await new Promise<number>(() => {})
}

if (require.main === module) {
  startLocal(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
    console.error('start-local: unexpected error:', err)
    process.exitCode = 1
  })
}
