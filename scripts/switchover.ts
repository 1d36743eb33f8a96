import { parseArgs } from 'node:util'
import { runScript, UsageError } from './cli'
import { scriptAdmin, tokenHelp, TOKEN_OPTION } from './auth'

/** The help text; `usage` is how the command is invoked (npm run switchover --, shardkv failover). */
const help = (usage: string): string => `Usage: ${usage} --group ID [options]

Planned switchover: the group's primary stops taking writes, an in-sync replica catches
up to it and is promoted under a new term, and the old primary becomes its replica.
Clients see latency, not errors. Use it before stopping or upgrading a primary.

Options:
  --router URL   router to talk to (default http://127.0.0.1:8080; https when
                 <cluster-dir>/tls/ca.pem exists, which is then trusted)
  --group ID     the group whose primary hands over (required)
  --to URL       the replica to promote (default: an in-sync replica the coordinator picks)
  --json         print the result as JSON on stdout
  --cluster-dir DIR  data dir of the local cluster run by npm start (default ./data)
${tokenHelp(17)}
  --help         this text`

/**
 * `npm run switchover` and `shardkv failover`: `args` are the command's arguments. The
 * result goes to stdout as JSON (always for the npm script, which always did; with --json
 * for shardkv, whose stdout is otherwise the human line).
 */
export async function switchover (args: string[], usage = 'npm run switchover --', jsonByDefault = true): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      router: { type: 'string' },
      group: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean', default: jsonByDefault },
      'cluster-dir': { type: 'string', default: 'data' },
      help: { type: 'boolean', default: false },
      ...TOKEN_OPTION
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(help(usage) + '\n')
    return 0
  }
  if (values.group === undefined) throw new UsageError('--group is required (see --help)')
  const admin = scriptAdmin(values)
  try {
    const done = await admin.switchover(values.group, values.to)
    const line = `switched ${done.group} over from ${done.from} to ${done.to}: term ${done.term}, epoch ${done.epoch}, at position ${done.position}, in ${done.tookMs} ms\n`
    if (values.json) {
      process.stderr.write(line)
      process.stdout.write(JSON.stringify(done) + '\n')
    } else {
      process.stdout.write(line)
    }
    return 0
  } finally {
    await admin.close()
  }
}

if (require.main === module) runScript('switchover', async () => await switchover(process.argv.slice(2)))
