import { existsSync, renameSync } from 'node:fs'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { parseArgs } from 'node:util'
import { MapFile } from '../src/membership/map-file'
import { groupIds } from '../src/local/cluster'
import { ManagedCluster } from '../src/local/managed-cluster'
import { NODES_FILE, readLauncherState, processAlive, readNodes, readNodesFile, type NodeEntry } from '../src/local/nodes-file'
import { describeEvent } from '../src/local/supervised'
import { PROCESS_RESTART_POLICY } from '../src/supervision/restart-policy'
import { assertPortsFree, PortBusyError } from '../src/local/ports'
import { ensureCredentials, type LocalCredentials } from '../src/local/credentials'
import { decideLocalTls, type LocalTlsFiles } from '../src/local/certificates'

/** What npm start gives its processes: the credentials files, and the TLS files with --tls. */
type Credentials = LocalCredentials & { tls?: LocalTlsFiles }

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
authenticate each other with), <data-dir>/tokens.json (client tokens, hashes only) and an
admin token, printed once and kept in <data-dir>/admin-token (mode 0600). Send it as
\`Authorization: Bearer <token>\`; the scripts (add-shard, ...) read it from there.

Options:
  --data-dir DIR      data and logs (default ./data: ./data/g1, ./data/coordinator, ./data/logs)
  --router-port N     router port (default 8080)
  --base-port N       first shard node port (default 7001)
  --groups N          number of shard groups (default 3; first start only)
  --replicas N        replica nodes per group (default 1; first start only; replica j of group i
                      on base-port + 100*j + i - 1)
  --workers N         worker processes per shard node (default: available parallelism; first start only)
  --restart-delay-ms N  wait before restarting a process that died (default 500; later crashes back
                      off 1, 2, 4, 8 s; the 6th within two minutes gives up). Longer than a failover
                      (about 3 s) makes a killed primary always come back as a replica.
  --tls               HTTPS on every listener and mutual TLS between the processes, with a CA
                      and certificate made by openssl in <data-dir>/tls on the first start
                      (clients trust <data-dir>/tls/ca.pem); kept on every later start
  --insecure          start without the cluster secret and tokens file (anyone on this machine
                      can use the cluster; for comparisons and benchmarks)
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
        tls: { type: 'boolean' }
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
    groups: intFlag('groups', values.groups, 3, 1, 64),
    replicas: intFlag('replicas', values.replicas, 1, 0, 4),
    workers: values.workers === undefined ? undefined : intFlag('workers', values.workers, 1, 1, 256),
    restartDelayMs: intFlag('restart-delay-ms', values['restart-delay-ms'], PROCESS_RESTART_POLICY.firstDelayMs, 0, 600_000),
    insecure: values.insecure === true,
    tls: values.tls === true
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

/** ./data/g1 when under the working directory (what the user typed), else absolute. */
function shown (path: string): string {
  const rel = relative(process.cwd(), path)
  if (rel === '') return '.'
  return rel.startsWith('..') || isAbsolute(rel) ? path : `.${sep}${rel}`
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

function summary (cluster: ManagedCluster, nodes: readonly NodeEntry[], opts: StartOptions, logDir: string, creds: Credentials | undefined): string {
  const rows = [
    { name: 'router', url: cluster.routerUrl, peer: undefined, data: undefined },
    { name: 'coordinator', url: cluster.coordinatorUrl, peer: readNodesFile(opts.dataDir)?.router?.peerPort, data: join(opts.dataDir, 'coordinator') },
    ...nodes.map((n) => ({ name: n.name, url: cluster.urlOf(n), peer: n.peerPort, data: n.dataDir }))
  ]
  const peerWidth = Math.max(...rows.map((r) => String(r.peer ?? '-').length))
  const urlWidth = Math.max(...rows.map((r) => r.url.length))
  const dataOf = (r: { data: string | undefined }): string => r.data === undefined ? '-' : shown(r.data)
  const dataWidth = Math.max(...rows.map((r) => dataOf(r).length))
  const nameWidth = Math.max(8, ...rows.map((r) => r.name.length))
  const groups = new Set(nodes.map((n) => n.group)).size
  const base = cluster.routerUrl
  // Double quotes: the shell runs $(cat ...) inside them, so the line works as printed.
  const auth = (creds === undefined ? '' : `-H "Authorization: Bearer $(cat ${shown(creds.adminTokenFile)})" `) +
    (creds?.tls === undefined ? '' : `--cacert ${shown(creds.tls.ca)} `)
  return [
    `shardkv local cluster is up (${groups} group${groups === 1 ? '' : 's'}, ${nodes.length} shard node${nodes.length === 1 ? '' : 's'})`,
    '',
    ...rows.map((r) => `  ${r.name.padEnd(nameWidth)} ${r.url.padEnd(urlWidth)}  peer ${String(r.peer ?? '-').padEnd(peerWidth)}  data ${dataOf(r).padEnd(dataWidth)}  log ${shown(join(logDir, `${r.name}.log`))}`),
    '',
    ...credentialLines(creds),
    'Try:',
    `  curl -i ${auth}-X PUT -H 'content-type: text/plain' --data-binary 'hello' ${base}/kv/greeting`,
    `  curl -i ${auth}${base}/kv/greeting`,
    `  curl -s ${auth}${base}/cluster`,
    '',
    `A node, the coordinator or the router that dies is restarted (with back-off). add-shard / add-replica nodes join this cluster.`,
    `Ctrl-C stops the router, the coordinator, then the shard nodes. Data stays in ${shown(opts.dataDir)}.`
  ].join('\n')
}

/**
 * Where the credentials are; the admin token itself only on the start that made it (the
 * file is its one copy: whoever runs \`npm start\` again reads it from there).
 */
function credentialLines (creds: Credentials | undefined): string[] {
  if (creds === undefined) return ['Credentials: none (--insecure).', '']
  const tls = creds.tls === undefined ? [] : [`TLS: every listener serves HTTPS; clients trust the local CA ${shown(creds.tls.ca)}.`]
  const lines = creds.createdAdminToken === undefined
    ? [`Admin token: in ${shown(creds.adminTokenFile)}.`]
    : [`Admin token (shown this once; kept in ${shown(creds.adminTokenFile)}, mode 0600):`, `  ${creds.createdAdminToken}`]
  return [...lines, `Cluster secret: ${shown(creds.clusterSecretFile)}. Client tokens: ${shown(creds.tokensFile)}.`, ...tls, '']
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
function managedCluster (opts: StartOptions, logDir: string, creds: Credentials | undefined): ManagedCluster {
  const tls = creds?.tls === undefined ? {} : { tlsCertFile: creds.tls.cert, tlsKeyFile: creds.tls.key, tlsCaFile: creds.tls.ca }
  return new ManagedCluster({
    ...(creds === undefined ? {} : { credentials: { clusterSecretFile: creds.clusterSecretFile, tokensFile: creds.tokensFile, ...tls } }),
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

/** Every port the cluster will listen on, named, peer ports included. */
function plannedPorts (opts: StartOptions, nodes: readonly NodeEntry[]): Array<{ name: string, port: number }> {
  const routerPeer = readNodesFile(opts.dataDir)?.router?.peerPort
  return [
    { name: 'router', port: opts.routerPort },
    { name: 'coordinator', port: coordinatorPortOf(opts) },
    ...(routerPeer === undefined ? [] : [{ name: 'coordinator peer', port: routerPeer }]),
    ...nodes.flatMap((n) => [{ name: n.name, port: n.port }, ...(n.peerPort === undefined ? [] : [{ name: `${n.name} peer`, port: n.peerPort }])])
  ]
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
async function prepare (opts: StartOptions, logDir: string): Promise<{ cluster: ManagedCluster, nodes: NodeEntry[], creds: Credentials | undefined } | number> {
  const previous = readLauncherState(opts.dataDir)
  if (previous !== undefined && processAlive(previous.pid) && previous.pid !== process.pid) {
    console.error(`start-local: a launcher (pid ${previous.pid}) already runs this cluster in ${shown(opts.dataDir)}`)
    return 1
  }
  let creds: Credentials | undefined
  let cluster: ManagedCluster
  let nodes: NodeEntry[]
  try {
    creds = credentials(opts)
    cluster = managedCluster(opts, logDir, creds)
    nodes = nodesToRun(cluster, opts)
  } catch (err) {
    console.error(`start-local: ${(err as Error).message}`)
    return 1
  }
  const ports = plannedPorts(opts, nodes)
  const clash = ports.find((p, i) => ports.findIndex((q) => q.port === p.port) !== i)
  if (clash !== undefined) {
    console.error(`start-local: port ${clash.port} is planned for both ${ports.find((q) => q.port === clash.port)?.name ?? '?'} and ${clash.name}; choose other ports with --router-port / --base-port`)
    return 1
  }
  try {
    await assertPortsFree(HOST, ports)
  } catch (err) {
    if (!(err instanceof PortBusyError)) throw err
    console.error(`start-local: ${err.message}.\nStop what uses ${err.busy.length === 1 ? 'it' : 'them'} (another \`npm start\`?) or choose other ports with --router-port / --base-port.`)
    return 1
  }
  return { cluster, nodes, creds }
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
  const { cluster, nodes, creds } = prepared
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
    console.log(`\n${why}: stopping the router, the coordinator, then the shard nodes...`)
    await cluster.stop().catch((err: unknown) => console.error(`start-local: ${(err as Error).message}`))
    console.log(`stopped. Data kept in ${shown(dataDir)}.`)
    process.exit(0)
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => { void shutdown(sig) })

  console.log(`starting ${nodes.length} shard node${nodes.length === 1 ? '' : 's'}, a coordinator and a router (logs in ${shown(logDir)})...`)
  try {
    await cluster.start(nodes)
  } catch (err) {
    if (stopping) return 0
    console.error(`start-local: the cluster did not start: ${(err as Error).message}`)
    await cluster.stop().catch(() => undefined)
    return 1
  }
  if (stopping) return 0
  console.log(summary(cluster, nodes, opts, logDir, creds))
  // Runs until a signal: the supervisors' children and the nodes-file poll keep the event loop alive.
  return await new Promise<number>(() => {})
}

if (require.main === module) {
  startLocal(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
    console.error('start-local: unexpected error:', err)
    process.exitCode = 1
  })
}
