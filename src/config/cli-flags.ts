import { parseArgs, type ParseArgsConfig } from 'node:util'

/**
 * What the command-line scripts (npm start, the benches) share for their own flags,
 * parsed with node:util's parseArgs: one usage error, and integer flags checked the same way.
 */

/** A bad flag: the script prints the message and `(see --help)`, and exits 2. */
export class UsageError extends Error {
  readonly code = 'ERR_SHARDKV_USAGE'
}

/** `raw` as an integer in [min, max]; `fallback` when the flag was not given. */
export function intFlag (name: string, raw: unknown, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${String(raw)}"`)
  }
  return Number(raw)
}

type FlagTable = NonNullable<ParseArgsConfig['options']>

/** `argv` parsed strictly (no positionals) by `options`; whatever parseArgs refuses becomes a UsageError. */
export function parseFlags<T extends FlagTable> (argv: string[], options: T): ReturnType<typeof parseArgs<{ args: string[], options: T, strict: true, allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}
