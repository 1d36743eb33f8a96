import { parseArgs } from 'node:util'
import { health, stopNode } from './shard-process'
import { findLocalLauncher, releaseManagedNode } from './local-launcher'
import { watchRebalance } from './progress'
import { printJson, runScript, UsageError } from './cli'
import { clusterCa, scriptAdmin, tokenHelp, TOKEN_OPTION } from './auth'

/** The help text; `usage` is how the command is invoked (npm run remove-shard --, shardkv remove-shard). */
const help = (usage: string): string => `Usage: ${usage} --id ID [options]

Drains a shard group out of a running cluster: its keys move to the remaining groups
while traffic flows; a progress bar shows the rebalance. When it has settled, the
group's nodes are stopped (through the launcher of a local cluster run by npm start,
else SIGTERM to the pid each reports), unless --keep-node.

Options:
  --router URL   router to talk to (default http://127.0.0.1:8080; https when
                 <cluster-dir>/tls/ca.pem exists, which is then trusted)
  --id ID        the group to remove (required)
  --keep-node    leave the drained node running
  --cluster-dir DIR  data dir of the local cluster run by npm start (default ./data)
  --no-wait      return once the rebalance has started
  --json         print the rebalance's final progress (or, with --no-wait, its start) as JSON on stdout
${tokenHelp(17)}
  --help         this text`

/** `npm run remove-shard` and `shardkv remove-shard`: `args` are the command's arguments. */
export async function removeShard (args: string[], usage = 'npm run remove-shard --'): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      router: { type: 'string' },
      id: { type: 'string' },
      'keep-node': { type: 'boolean', default: false },
      'cluster-dir': { type: 'string', default: 'data' },
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
  if (values.id === undefined) throw new UsageError('--id is required (see --help)')
  const admin = scriptAdmin(values)
  const cluster = await admin.cluster()
  const group = cluster.groups.find((g) => g.id === values.id)
  if (group === undefined) throw new UsageError(`group ${values.id} does not exist (groups: ${cluster.groups.map((g) => g.id).join(', ')})`)
  const started = await admin.removeGroup(values.id)
  process.stderr.write(`draining group ${values.id}; rebalance ${started.id} started\n`)
  if (values['no-wait']) return printJson(values.json, { group: values.id, rebalance: started })
  const done = await watchRebalance(admin)
  process.stderr.write(`rebalance done: ${done.copied} rows moved off ${values.id}, ${done.deleted} purged\n`)
  if (values['keep-node']) return printJson(values.json, { group: values.id, rebalance: done })
  const launcher = findLocalLauncher(values['cluster-dir'], admin.routerUrl)
  for (const node of group.nodes) {
    const released = launcher === undefined ? undefined : await releaseManagedNode(launcher, node.url)
    if (released !== undefined) {
      process.stderr.write(released.stopped ? `the local cluster's launcher stopped ${released.name} (${node.url}); its data dir is kept\n` : `asked the launcher to stop ${released.name} (${node.url}); it has not stopped yet\n`)
      continue
    }
    const h = await health(node.url, clusterCa(values['cluster-dir'], values.ca))
    if (h === undefined) continue
    const local = /^https?:\/\/(127\.|localhost|\[::1\])/.test(node.url)
    if (!local) {
      process.stderr.write(`node ${node.url} is not on this machine; stop it there\n`)
      continue
    }
    const stopped = await stopNode(h.pid)
    process.stderr.write(stopped ? `stopped node ${node.url} (pid ${h.pid})\n` : `node ${node.url} (pid ${h.pid}) did not stop in time\n`)
  }
  return printJson(values.json, { group: values.id, rebalance: done })
}

if (require.main === module) runScript('remove-shard', async () => await removeShard(process.argv.slice(2)))
