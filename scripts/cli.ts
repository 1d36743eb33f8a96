import { ShardKvError } from '../src/protocol/errors'

/** A mistake in how a script was called: exit code 2 (anything else that fails: 1). */
export class UsageError extends Error {}

/** Runs a script's main, exiting with its code, or with one clear line on failure. */
export function runScript (name: string, main: () => Promise<number>): void {
  main().then((code) => process.exit(code), (err: Error) => {
    const detail = err instanceof ShardKvError ? ` (${err.code})` : ''
    process.stderr.write(`${name}: ${err.message}${detail}\n`)
    process.exit(err instanceof UsageError ? 2 : 1)
  })
}
