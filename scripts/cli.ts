import { ShardKvError } from '../src/protocol/errors'

/**
 * Exit codes of the scripts and of every `shardkv` subcommand (docs/cli.md): a mistake
 * in how it was called is 2, anything else that fails 1; `shardkv check` says 3 when it
 * found the cluster inconsistent.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, inconsistent: 3 } as const

/** A mistake in how a script was called: exit code 2 (anything else that fails: 1). */
export class UsageError extends Error {}

/** A usage mistake: ours, or node:util parseArgs refusing an option (unknown, missing value, ...). */
export function isUsageError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))
}

/** The one line a failure is reported with: the message, and the server's error code when it sent one. */
export function failureLine (name: string, err: Error): string {
  const detail = err instanceof ShardKvError ? ` (${err.code})` : ''
  const hint = isUsageError(err) && !err.message.includes('--help') ? ' (see --help)' : ''
  return `${name}: ${err.message}${detail}${hint}\n`
}

/** Runs a script's main, exiting with its code, or with one clear line on failure. */
export function runScript (name: string, main: () => Promise<number>): void {
  main().then((code) => process.exit(code), (err: Error) => {
    process.stderr.write(failureLine(name, err))
    process.exit(isUsageError(err) ? EXIT.usage : EXIT.failure)
  })
}

/** With --json, the command's result as one line of JSON on stdout (its progress stays on stderr). */
export function printJson (json: boolean, result: unknown): number {
  if (json) process.stdout.write(JSON.stringify(result) + '\n')
  return EXIT.ok
}
