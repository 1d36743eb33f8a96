import { parseArgs } from 'node:util'
import { runScript, UsageError } from './cli'
import { scriptAdmin, tokenHelp, TOKEN_OPTION } from './auth'

const HELP = `Usage: npm run switchover -- --group ID [options]

Planned switchover: the group's primary stops taking writes, an in-sync replica catches
up to it and is promoted under a new term, and the old primary becomes its replica.
Clients see latency, not errors. Use it before stopping or upgrading a primary.

Options:
  --router URL   router to talk to (default http://127.0.0.1:8080)
  --group ID     the group whose primary hands over (required)
  --to URL       the replica to promote (default: an in-sync replica the coordinator picks)
  --cluster-dir DIR  data dir of the local cluster run by npm start (default ./data)
${tokenHelp(17)}
  --help         this text`

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      router: { type: 'string' },
      group: { type: 'string' },
      to: { type: 'string' },
      'cluster-dir': { type: 'string', default: 'data' },
      help: { type: 'boolean', default: false },
      ...TOKEN_OPTION
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  if (values.group === undefined) throw new UsageError('--group is required (see --help)')
  const admin = scriptAdmin(values)
  try {
    const done = await admin.switchover(values.group, values.to)
    process.stderr.write(`switched ${done.group} over from ${done.from} to ${done.to}: term ${done.term}, epoch ${done.epoch}, at position ${done.position}, in ${done.tookMs} ms\n`)
    process.stdout.write(JSON.stringify(done) + '\n')
    return 0
  } finally {
    await admin.close()
  }
}

runScript('switchover', main)
