import { parseArgs } from 'node:util'
import { join, resolve } from 'node:path'
import { freePeerPort, startDetachedShard, stopNode } from './shard-process'
import { anyFreePort } from '../src/local/ports'
import { nodeCredentials, scriptAdmin, tokenHelp, TOKEN_OPTION } from './auth'
import { detachedNotice, findLocalLauncher, releaseManagedNode, startManagedNode, type LocalLauncher } from './local-launcher'
import { validateWeight } from '../src/membership/map'
import { watchRebalance } from './progress'
import { printJson, runScript, UsageError } from './cli'

/** The help text; `usage` is how the command is invoked (npm run add-shard --, shardkv add-shard). */
const help = (usage: string): string => `Usage: ${usage} [options]

Adds a shard group to a running cluster and rebalances onto it while traffic flows.
Unless --url names a node that is already running, it starts a new shard node, waits
until it is healthy, adds it through the router's admin API and shows the rebalance
until it settles. When \`npm start\` runs the cluster (a launcher in --cluster-dir for
this --router), the launcher starts and supervises the node: it stops with the
cluster and starts again with the next \`npm start\`. Otherwise the node runs detached,
logging to <data-dir>/../logs/<id>.log. The admin token and the credentials files for new
nodes come from --cluster-dir (where npm start keeps them), unless given.

Options:
  --router URL       router to talk to (default http://127.0.0.1:8080; https when
                     <cluster-dir>/tls/ca.pem exists, which is then trusted)
  --id ID            group id (default: g<N+1> for the next free N)
  --weight W         ring weight (default 1)
  --url URL          use this already running node instead of starting one
  --registered       with the etcd registry: the nodes already registered for --id
                     (started elsewhere with --group ID); the first started is the primary
  --port P           port for the new node (default: a free one)
  --host H           address for the new node (default 127.0.0.1)
  --data-dir DIR     data dir for the new node (default <cluster-dir>/<id>)
  --cluster-dir DIR  data dir of the local cluster run by npm start (default ./data)
  --workers N        worker processes for the new node (default 0: it serves in its own process)
  --replicas N       also start N replica nodes for the group (default 0; ports free, data <data-dir>-rJ)
  --no-wait          return once the rebalance has started
  --json             print the rebalance's final progress (or, with --no-wait, its start) as JSON on stdout
${tokenHelp(21)}
  --help             this text`

/** `npm run add-shard` and `shardkv add-shard`: `args` are the command's arguments. */
export async function addShard (args: string[], usage = 'npm run add-shard --'): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      router: { type: 'string' },
      id: { type: 'string' },
      weight: { type: 'string', default: '1' },
      url: { type: 'string' },
      registered: { type: 'boolean', default: false },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string' },
      'cluster-dir': { type: 'string', default: 'data' },
      workers: { type: 'string' },
      replicas: { type: 'string', default: '0' },
      'no-wait': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      ...TOKEN_OPTION
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(help(usage) + '\n')
    return 0
  }
  const weight = Number(values.weight)
  const port = Number(values.port)
  try {
    validateWeight(weight)
  } catch (err) {
    throw new UsageError(`--weight: ${(err as Error).message}`)
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be a port number')
  const replicaCount = Number(values.replicas)
  if (!Number.isInteger(replicaCount) || replicaCount < 0 || replicaCount > 8) throw new UsageError('--replicas must be an integer from 0 to 8')
  if (values.url !== undefined && replicaCount > 0) throw new UsageError('--replicas starts nodes; with --url, add replicas afterwards with add-replica')
  if (values.registered && (values.id === undefined || values.url !== undefined || replicaCount > 0)) throw new UsageError('--registered takes the group\'s registered nodes: name it with --id, without --url or --replicas')
  const admin = scriptAdmin(values)
  const cluster = await admin.cluster()
  if (cluster.rebalance !== undefined && cluster.rebalance !== null && cluster.rebalance.phase !== 'done') {
    throw new UsageError(`a rebalance (${cluster.rebalance.id}) is still running; wait for it to finish`)
  }
  let id = values.id
  if (id === undefined) {
    let n = cluster.groups.length + 1
    while (cluster.groups.some((g) => g.id === `g${n}`)) n++
    id = `g${n}`
  }
  if (cluster.groups.some((g) => g.id === id)) throw new UsageError(`group ${id} already exists`)

  const started: StartedNode[] = []
  const launcher = values.url === undefined && !values.registered ? findLocalLauncher(values['cluster-dir'], admin.routerUrl) : undefined
  let rebalance
  try {
    if (values.registered) {
      rebalance = await admin.addRegisteredGroup(id, weight)
    } else {
      const nodes = values.url !== undefined
        ? { url: values.url, replicas: [] }
        : await startGroupNodes(id, values['data-dir'] ?? join(values['cluster-dir'], id), { host: values.host, port, replicas: replicaCount, workers: values.workers !== undefined ? Number(values.workers) : undefined, launcher, clusterDir: values['cluster-dir'] }, started)
      rebalance = await admin.addGroup(id, nodes.url, weight, nodes.replicas)
    }
  } catch (err) {
    // Nodes we started belong to no group: do not leave them running.
    await Promise.all(started.map(async (n) => await n.stop()))
    throw err
  }
  const url = started[0]?.url ?? values.url ?? await registeredPrimary(admin, id)
  process.stderr.write(`added group ${id} (${url ?? 'registered nodes'}, weight ${weight}); rebalance ${rebalance.id} started\n`)
  if (values['no-wait']) return printJson(values.json, { group: id, url, rebalance })
  const done = await watchRebalance(admin)
  process.stderr.write(`rebalance done: ${done.scanned} rows scanned, ${done.copied} copied to ${id}, ${done.deleted} purged from the old owners\n`)
  return printJson(values.json, { group: id, url, rebalance: done })
}

/** The primary the coordinator chose among a group's registered nodes, once its map lists the group (up to 10 s). */
async function registeredPrimary (admin: ReturnType<typeof scriptAdmin>, id: string): Promise<string | undefined> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 100))) {
    const url = (await admin.cluster()).groups.find((g) => g.id === id)?.nodes.find((n) => n.role === 'primary')?.url
    if (url !== undefined) return url
  }
  return undefined
}

interface StartedNode { url: string, pid: number, stop: () => Promise<unknown> }

/** Starts the group's primary and replica nodes, recording each in `started` as soon as it runs. */
async function startGroupNodes (id: string, dataDir: string, opts: { host: string, port: number, replicas: number, workers: number | undefined, launcher: LocalLauncher | undefined, clusterDir: string }, started: StartedNode[]): Promise<{ url: string, replicas: string[] }> {
  for (let j = 0; j <= opts.replicas; j++) {
    const name = j === 0 ? id : `${id}-r${j}`
    const dir = resolve(j === 0 ? dataDir : `${dataDir}-r${j}`)
    const l = opts.launcher
    if (l !== undefined) {
      if (opts.host !== '127.0.0.1') throw new UsageError('nodes of a local cluster listen on 127.0.0.1 (drop --host)')
      const port = j === 0 && opts.port !== 0 ? opts.port : await anyFreePort(opts.host)
      const peerPort = await freePeerPort(opts.host, port)
      process.stderr.write(`asking the local cluster's launcher (pid ${l.pid}) to start shard node ${name} (port ${port}, peer port ${peerPort}, data ${dir}) ...\n`)
      const node = await startManagedNode(l, { name, group: id, port, peerPort, dataDir: dir, ...(opts.workers === undefined ? {} : { workers: opts.workers }) })
      started.push({ ...node, stop: async () => await releaseManagedNode(l, node.url) })
      process.stderr.write(`shard node ${name} is healthy at ${node.url} (pid ${node.pid}), supervised by the launcher\n`)
      continue
    }
    if (j === 0) process.stderr.write(detachedNotice(opts.clusterDir))
    const logFile = join(dataDir, '..', 'logs', `${name}.log`)
    process.stderr.write(`starting shard node ${name} (data ${dir}, log ${logFile}) ...\n`)
    const node = await startDetachedShard({ host: opts.host, port: j === 0 ? opts.port : 0, dataDir: dir, workers: opts.workers, logFile, credentials: nodeCredentials(opts.clusterDir) })
    started.push({ ...node, stop: async () => await stopNode(node.pid) })
    process.stderr.write(`shard node ${name} is healthy at ${node.url} (pid ${node.pid})\n`)
  }
  const [primary, ...replicas] = started
  if (primary === undefined) throw new UsageError('no node to add')
  return { url: primary.url, replicas: replicas.map((r) => r.url) }
}

if (require.main === module) runScript('add-shard', async () => await addShard(process.argv.slice(2)))
