import { existsSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { MapFile } from '../src/membership/map-file'
import { groupIds } from '../src/local/cluster'
import { ManagedCluster } from '../src/local/managed-cluster'
import { NODES_FILE, readLauncherState, processAlive, readNodes, readNodesFile, type NodeEntry } from '../src/local/nodes-file'
import { describeEvent } from '../src/local/supervised'
import { PROCESS_RESTART_POLICY } from '../src/supervision/restart-policy'
import { assertPortsFree, PortBusyError } from '../src/local/ports'
import { ensureCredentials } from '../src/local/credentials'
import { decideLocalTls } from '../src/local/certificates'
import { shown, summary, type Credentials } from '../src/local/summary'
import { decideShape, readShape, ShapeError, writeShape, type EtcdShape } from '../src/local/control-shape'
import { help, HOST, parseOptions, UsageError, type StartOptions } from './start-local-options'
import { etcdPlaneOf, type EtcdPlane } from '../src/local/etcd-plane'
import { etcdAvailable } from '../src/local/etcd-members'

/**
 * `npm start`: the default local cluster — N shard nodes (groups g1..gN), a coordinator
 * and a router (threads of this launcher unless --processes), all on 127.0.0.1, data and
 * logs under ./data. Data survives restarts: shard nodes reopen their SQLite files and the
 * coordinator loads its persisted cluster map. The nodes run are those of
 * ./data/nodes.json (written from the flags on a first start, edited by add-shard and
 * friends); every one is supervised (src/local/managed-cluster.ts).
 * Secure by default: every process gets the cluster secret and the tokens file of
 * the data dir (src/local/credentials.ts), made on the first start.
 */

/** How long the summary waits to name the leading coordinator (the launcher has waited for one already). */
const LEADER_SUMMARY_WAIT_MS = 15_000

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
