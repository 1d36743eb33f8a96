import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { AdminClient } from '../src/client/admin'
import { startDetachedShard } from './shard-process'
import { watchRebalance } from './progress'
import { runScript, UsageError } from './cli'

const HELP = `Usage: npm run add-shard -- [options]

Adds a shard group to a running cluster and rebalances onto it while traffic flows.
Unless --url names a node that is already running, it starts a new shard node
(detached, logging to <data-dir>/../logs/<id>.log), waits until it is healthy,
adds it through the router's admin API and shows the rebalance until it settles.

Options:
  --router URL       router to talk to (default http://127.0.0.1:8080)
  --id ID            group id (default: g<N+1> for the next free N)
  --weight W         ring weight (default 1)
  --url URL          use this already running node instead of starting one
  --port P           port for the new node (default: a free one)
  --host H           address for the new node (default 127.0.0.1)
  --data-dir DIR     data dir for the new node (default ./data/<id>)
  --workers N        worker processes for the new node (default: available parallelism)
  --replicas N       also start N replica nodes for the group (default 0; ports free, data <data-dir>-rJ)
  --no-wait          return once the rebalance has started
  --help             this text`

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      router: { type: 'string', default: 'http://127.0.0.1:8080' },
      id: { type: 'string' },
      weight: { type: 'string', default: '1' },
      url: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string' },
      workers: { type: 'string' },
      replicas: { type: 'string', default: '0' },
      'no-wait': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  const weight = Number(values.weight)
  const port = Number(values.port)
  if (!(weight > 0)) throw new UsageError('--weight must be a positive number')
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be a port number')
  const replicaCount = Number(values.replicas)
  if (!Number.isInteger(replicaCount) || replicaCount < 0 || replicaCount > 8) throw new UsageError('--replicas must be an integer from 0 to 8')
  if (values.url !== undefined && replicaCount > 0) throw new UsageError('--replicas starts nodes; with --url, add replicas afterwards with add-replica')
  const admin = new AdminClient(values.router.replace(/\/$/, ''))
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

  let url = values.url
  const replicas: string[] = []
  if (url === undefined) {
    const dataDir = values['data-dir'] ?? join('data', id)
    const workers = values.workers !== undefined ? Number(values.workers) : undefined
    for (let j = 0; j <= replicaCount; j++) {
      const name = j === 0 ? id : `${id}-r${j}`
      const dir = j === 0 ? dataDir : `${dataDir}-r${j}`
      const logFile = join(dataDir, '..', 'logs', `${name}.log`)
      process.stderr.write(`starting shard node ${name} (data ${dir}, log ${logFile}) ...\n`)
      const node = await startDetachedShard({ host: values.host, port: j === 0 ? port : 0, dataDir: dir, workers, logFile })
      process.stderr.write(`shard node ${name} is healthy at ${node.url} (pid ${node.pid})\n`)
      if (j === 0) url = node.url
      else replicas.push(node.url)
    }
  }
  if (url === undefined) throw new UsageError('no node to add')

  const started = await admin.addGroup(id, url, weight, replicas)
  process.stderr.write(`added group ${id} (${url}, weight ${weight}); rebalance ${started.id} started\n`)
  if (values['no-wait']) return 0
  const done = await watchRebalance(admin)
  process.stderr.write(`rebalance done: ${done.scanned} rows scanned, ${done.copied} copied to ${id}, ${done.deleted} purged from the old owners\n`)
  return 0
}

runScript('add-shard', main)
