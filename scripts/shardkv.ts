import { Command, CommanderError } from 'commander'
import { registerStatus } from './shardkv/status'
import { registerCheck } from './shardkv/check'
import { registerWatch } from './shardkv/watch'
import { registerDelegates } from './shardkv/delegates'
import { EXIT, failureLine, isUsageError } from './cli'

/**
 * The `shardkv` command (package.json `bin`; `npx shardkv <command>` in a checkout, after
 * `npm run build`): one entry for running and operating a cluster. status, check and
 * watch are its own (scripts/shardkv/); start, add-shard, remove-shard, add-replica,
 * remove-replica and failover are the operator scripts, arguments passed through.
 * Exit codes (docs/cli.md): 0 ok, 1 failure, 2 usage, 3 `check` found inconsistencies.
 */

export function program (done: (code: number) => void): Command {
  // Commander's own messages (unknown option, bad value) name the subcommand, like ours.
  let name = 'shardkv'
  const p = new Command('shardkv')
    .description('Run and operate a shardkv cluster. Every command takes --help.')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (text, write) => { write(`${name}: ${text.replace(/^error: /, '')}`) } })
    .hook('preSubcommand', (_program, sub) => { name = `shardkv ${sub.name()}` })
  registerDelegates(p, done)
  registerStatus(p, done)
  registerCheck(p, done)
  registerWatch(p, done)
  p.addHelpText('after', '\nExit codes: 0 ok, 1 failure, 2 usage error, 3 check found inconsistencies. Reference: docs/cli.md')
  return p
}

/** Runs the command line; resolves with the exit code. */
export async function main (argv: string[]): Promise<number> {
  // `shardkv status | head` closes our stdout early: that is the reader's choice, not a failure.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(EXIT.ok) })
  let code: number = EXIT.ok
  const p = program((c) => { code = c })
  try {
    await p.parseAsync(argv, { from: 'user' })
    return code
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are answers, not errors; commander has printed the message of the rest.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage
    }
    const command = p.args[0] === undefined ? 'shardkv' : `shardkv ${p.args[0]}`
    process.stderr.write(failureLine(command, err as Error))
    return isUsageError(err) ? EXIT.usage : EXIT.failure
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => process.exit(code))
}
