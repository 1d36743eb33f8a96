import { parseArgs } from 'node:util'
import { basename, join, resolve } from 'node:path'
import { existsSync } from 'node:fs'
import type { AdminClient } from '../src/client/admin'
import { printJson, runScript, UsageError } from './cli'
import { freePeerPort, startDetachedShard, health, stopNode } from './shard-process'
import { anyFreePort } from '../src/local/ports'
import { clusterCa, nodeCredentials, scriptAdmin, tokenHelp, TOKEN_OPTION } from './auth'
import { detachedNotice, findLocalLauncher, releaseManagedNode, startManagedNode, type LocalLauncher } from './local-launcher'
import { readNodes } from '../src/local/nodes-file'

/** How a command is invoked: `npm run add-replica --`, or `shardkv add-replica`. */
export type Invocation = (command: string) => string
const npmRun: Invocation = (command) => `npm run ${command} --`

/** The help text, its usage lines as `run` invokes the commands. */
const help = (run: Invocation): string => `Usage: ${run('add-replica')} --group ID [options]
       ${run('remove-replica')} --group ID --url URL [options]
       ${run('replace-node')} --group ID --url URL [options]

add-replica starts a new shard node (unless --url names a running one) and adds it to
the group as a replica: it starts out of sync, the primary streams it a full copy, and it
joins the in-sync set once caught up (watch "inSync" and "lag" in GET /cluster). When
\`npm start\` runs the cluster (a launcher in --cluster-dir for this --router), the
launcher starts and supervises the node; otherwise it runs detached.
remove-replica takes a replica out of the group, then stops its node (through the
launcher, or SIGTERM to the pid it reports), unless --keep-node.
replace-node replaces a replica whose disk is gone (or that cannot come back): it is
removed from the group and a fresh replica is added in its place (new data dir, new
port). A dead primary is first replaced by the coordinator's failover.

Options:
  --router URL     router to talk to (default http://127.0.0.1:8080; https when
                   <cluster-dir>/tls/ca.pem exists, which is then trusted)
  --group ID       the group (required)
  --url URL        add: use this running node; remove, replace: the replica to remove
  --port P         add: port for the new node (default: a free one)
  --data-dir DIR   add: data dir for the new node (default <cluster-dir>/<group>-r<N>)
  --cluster-dir DIR  data dir of the local cluster run by npm start (default ./data)
  --workers N      add: worker processes for the new node
  --keep-node      remove: leave the node running
  --json           print the result ({group, url} of the node added or removed) as JSON on stdout
${tokenHelp(19)}
  --help           this text`

export type Mode = 'add' | 'remove' | 'replace'

/** add-replica, remove-replica and replace-node (npm run, or shardkv): `args` are the command's arguments. */
export async function replicaCommand (mode: Mode, args: string[], run: Invocation = npmRun): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      router: { type: 'string' },
      group: { type: 'string' },
      url: { type: 'string' },
      port: { type: 'string', default: '0' },
      'data-dir': { type: 'string' },
      'cluster-dir': { type: 'string', default: 'data' },
      workers: { type: 'string' },
      'keep-node': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      ...TOKEN_OPTION
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(help(run) + '\n')
    return 0
  }
  if (values.group === undefined) throw new UsageError('--group is required (see --help)')
  const admin = scriptAdmin(values)
  const cluster = await admin.cluster()
  const group = cluster.groups.find((g) => g.id === values.group)
  if (group === undefined) throw new UsageError(`group ${values.group} does not exist (groups: ${cluster.groups.map((g) => g.id).join(', ')})`)

  const launcher = findLocalLauncher(values['cluster-dir'], admin.routerUrl)
  if (mode === 'replace') {
    // A node whose disk is gone: out of the group (its entry out of the local cluster), then a fresh replica.
    if (values.url === undefined) throw new UsageError('--url names the node to replace')
    const url = values.url.replace(/\/$/, '')
    const node = group.nodes.find((n) => n.url === url)
    if (node === undefined) throw new UsageError(`${url} is not a node of ${group.id}`)
    if (node.role === 'primary') throw new UsageError(`${url} is ${group.id}'s primary; replace it once a replica has taken over (the coordinator fails over when the primary stays down)`)
    await removeNode(admin, group.id, url, launcher, false, clusterCa(values['cluster-dir'], values.ca))
    values.url = undefined
    mode = 'add'
  }
  if (mode === 'add') {
    let url = values.url
    const workers = values.workers !== undefined ? Number(values.workers) : undefined
    let release: (() => Promise<unknown>) | undefined
    if (url === undefined && launcher !== undefined) {
      // Named <group>-r<N> for the first N free both on disk and in the nodes file.
      const names = new Set((readNodes(launcher.dataDir) ?? []).map((e) => e.name))
      let n = 1
      while (names.has(`${group.id}-r${n}`) || existsSync(join(values['cluster-dir'], `${group.id}-r${n}`))) n++
      const name = `${group.id}-r${n}`
      const dataDir = resolve(values['data-dir'] ?? join(values['cluster-dir'], name))
      const port = Number(values.port) !== 0 ? Number(values.port) : await anyFreePort('127.0.0.1')
      const peerPort = await freePeerPort('127.0.0.1', port)
      const node = await startManagedNode(launcher, { name, group: group.id, port, peerPort, dataDir, ...(workers === undefined ? {} : { workers }) })
      process.stderr.write(`replica node ${name} is healthy at ${node.url} (pid ${node.pid}, data ${dataDir}), supervised by the local cluster's launcher\n`)
      url = node.url
      release = async () => await releaseManagedNode(launcher, node.url)
    } else if (url === undefined) {
      let n = 1
      while (existsSync(join(values['cluster-dir'], `${group.id}-r${n}`))) n++
      const dataDir = values['data-dir'] ?? join(values['cluster-dir'], `${group.id}-r${n}`)
      process.stderr.write(detachedNotice(values['cluster-dir']))
      const logFile = join(dataDir, '..', 'logs', `${basename(dataDir)}.log`)
      const node = await startDetachedShard({ host: '127.0.0.1', port: Number(values.port), dataDir, workers, logFile, credentials: nodeCredentials(values['cluster-dir']) })
      process.stderr.write(`started replica node at ${node.url} (pid ${node.pid}, data ${dataDir})\n`)
      url = node.url
      release = async () => await stopNode(node.pid)
    }
    try {
      await admin.addReplica(group.id, url)
    } catch (err) {
      // A node we started that joined no group must not be left running.
      await release?.()
      throw err
    }
    process.stderr.write(`added ${url} to ${group.id} as a replica; it joins the in-sync set once caught up\n`)
    return printJson(values.json, { group: group.id, added: url })
  }

  if (values.url === undefined) throw new UsageError('--url names the replica to remove')
  await removeNode(admin, group.id, values.url.replace(/\/$/, ''), launcher, values['keep-node'], clusterCa(values['cluster-dir'], values.ca))
  return printJson(values.json, { group: group.id, removed: values.url.replace(/\/$/, '') })
}

/** Takes the replica out of the group, then stops its node (unless keepNode): through the local launcher, else by pid. */
async function removeNode (admin: AdminClient, groupId: string, url: string, launcher: LocalLauncher | undefined, keepNode: boolean, ca: string | undefined): Promise<void> {
  await admin.removeReplica(groupId, url)
  process.stderr.write(`removed replica ${url} from ${groupId}\n`)
  if (keepNode) return
  const released = launcher === undefined ? undefined : await releaseManagedNode(launcher, url)
  if (released !== undefined) {
    process.stderr.write(released.stopped ? `the local cluster's launcher stopped ${released.name} (${url}); its data dir is kept\n` : `asked the launcher to stop ${released.name} (${url}); it has not stopped yet\n`)
    return
  }
  const h = await health(url, ca)
  if (h !== undefined && /^https?:\/\/(127\.|localhost|\[::1\])/.test(url)) {
    const stopped = await stopNode(h.pid)
    process.stderr.write(stopped ? `stopped node ${url} (pid ${h.pid})\n` : `node ${url} (pid ${h.pid}) did not stop in time\n`)
  }
}

/** Entry of scripts/add-replica.ts, scripts/remove-replica.ts and scripts/replace-node.ts. */
export function runReplicaCommand (mode: Mode): void {
  runScript(mode === 'replace' ? 'replace-node' : `${mode}-replica`, async () => await replicaCommand(mode, process.argv.slice(2)))
}
