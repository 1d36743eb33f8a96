import { parseArgs } from 'node:util'
import { basename, join } from 'node:path'
import { existsSync } from 'node:fs'
import { AdminClient } from '../src/client/admin'
import { runScript, UsageError } from './cli'
import { startDetachedShard, health, stopNode } from './shard-process'

const HELP = `Usage: npm run add-replica -- --group ID [options]
       npm run remove-replica -- --group ID --url URL [options]

add-replica starts a new shard node (detached, unless --url names a running one) and adds
it to the group as a replica: it starts out of sync, the primary streams it a full copy,
and it joins the in-sync set once caught up (watch "inSync" and "lag" in GET /cluster).
remove-replica takes a replica out of the group, then stops its node (SIGTERM to the pid
it reports), unless --keep-node.

Options:
  --router URL     router to talk to (default http://127.0.0.1:8080)
  --group ID       the group (required)
  --url URL        add: use this running node; remove: the replica to remove
  --port P         add: port for the new node (default: a free one)
  --data-dir DIR   add: data dir for the new node (default ./data/<group>-r<N>)
  --workers N      add: worker processes for the new node
  --keep-node      remove: leave the node running
  --help           this text`

async function main (mode: 'add' | 'remove'): Promise<number> {
  const { values } = parseArgs({
    options: {
      router: { type: 'string', default: 'http://127.0.0.1:8080' },
      group: { type: 'string' },
      url: { type: 'string' },
      port: { type: 'string', default: '0' },
      'data-dir': { type: 'string' },
      workers: { type: 'string' },
      'keep-node': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  if (values.group === undefined) throw new UsageError('--group is required (see --help)')
  const admin = new AdminClient(values.router.replace(/\/$/, ''))
  const cluster = await admin.cluster()
  const group = cluster.groups.find((g) => g.id === values.group)
  if (group === undefined) throw new UsageError(`group ${values.group} does not exist (groups: ${cluster.groups.map((g) => g.id).join(', ')})`)

  if (mode === 'add') {
    let url = values.url
    if (url === undefined) {
      let n = 1
      while (existsSync(join('data', `${group.id}-r${n}`))) n++
      const dataDir = values['data-dir'] ?? join('data', `${group.id}-r${n}`)
      const logFile = join(dataDir, '..', 'logs', `${basename(dataDir)}.log`)
      const node = await startDetachedShard({ host: '127.0.0.1', port: Number(values.port), dataDir, workers: values.workers !== undefined ? Number(values.workers) : undefined, logFile })
      process.stderr.write(`started replica node at ${node.url} (pid ${node.pid}, data ${dataDir})\n`)
      url = node.url
    }
    await admin.addReplica(group.id, url)
    process.stderr.write(`added ${url} to ${group.id} as a replica; it joins the in-sync set once caught up\n`)
    return 0
  }

  if (values.url === undefined) throw new UsageError('--url names the replica to remove')
  const url = values.url.replace(/\/$/, '')
  await admin.removeReplica(group.id, url)
  process.stderr.write(`removed replica ${url} from ${group.id}\n`)
  if (!values['keep-node']) {
    const h = await health(url)
    if (h !== undefined && /^http:\/\/(127\.|localhost|\[::1\])/.test(url)) {
      const stopped = await stopNode(h.pid)
      process.stderr.write(stopped ? `stopped node ${url} (pid ${h.pid})\n` : `node ${url} (pid ${h.pid}) did not stop in time\n`)
    }
  }
  return 0
}

/** Entry of scripts/add-replica.ts and scripts/remove-replica.ts. */
export function runReplicaCommand (mode: 'add' | 'remove'): void {
  runScript(`${mode}-replica`, async () => await main(mode))
}
