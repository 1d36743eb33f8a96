import { parseArgs } from 'node:util'

/** Command line of `npm run bench`. */

export interface BenchOptions {
  /** Seconds of measured load per scenario. */
  duration: number
  /** Seconds of unmeasured load before each scenario (JIT, caches, pools warm up). */
  warmup: number
  connections: number
  keys: number
  valueBytes: number
  /** Worker processes per shard node. */
  workers: number
  groups: number
  /** Keep the temp dir (data and logs) for inspection. */
  keep: boolean
}

export const HELP = `Usage: npm run bench -- [options]      (or: node dist/bench/run.js [options])

Starts its own cluster in a temp dir (shard nodes g1..gN plus a router on 127.0.0.1),
preloads keys, then measures with a fixed number of connections:
  routed GET / PUT   through the router, keys spread over all groups
  direct GET / PUT   straight to g1's node, only keys g1 owns (client-side ring)
Prints req/s, p50/p99 latency and errors, and writes JSON to bench/results/.

Options:
  --duration S       measured seconds per scenario (default 10)
  --warmup S         unmeasured seconds before each scenario (default 2; 0 = none)
  --connections N    concurrent connections (default 32)
  --keys N           keys preloaded (default 10000)
  --value-bytes N    value size in bytes (default 100)
  --workers N        worker processes per shard node (default 1)
  --groups N         shard groups (default 3)
  --keep             keep the temp dir (data, logs) instead of removing it
  --help             show this text`

export class UsageError extends Error {}

function int (name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`)
  }
  return Number(raw)
}

export function parseBenchOptions (argv: string[]): BenchOptions | 'help' {
  let values
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        keep: { type: 'boolean' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        keys: { type: 'string' },
        'value-bytes': { type: 'string' },
        workers: { type: 'string' },
        groups: { type: 'string' }
      }
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help === true) return 'help'
  return {
    duration: int('duration', values.duration, 10, 1, 3600),
    warmup: int('warmup', values.warmup, 2, 0, 600),
    connections: int('connections', values.connections, 32, 1, 10_000),
    keys: int('keys', values.keys, 10_000, 1, 10_000_000),
    // 1 MiB is the servers' default value limit.
    valueBytes: int('value-bytes', values['value-bytes'], 100, 0, 1024 * 1024),
    workers: int('workers', values.workers, 1, 1, 64),
    groups: int('groups', values.groups, 3, 1, 64),
    keep: values.keep === true
  }
}
