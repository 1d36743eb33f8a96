import { join, resolve } from 'node:path'
import { groupSpec, launchRouter, launchShard, stopAll, type LaunchedProcess } from './launcher'

/**
 * A whole single-machine cluster: one shard node per group plus a router that knows
 * them. Shared by `npm start` (fixed ports, ./data) and the benchmark (free ports,
 * a temp dir) so both start the system the same way.
 */

export interface LocalClusterOptions {
  /** Shard g1 keeps its data in <dataDir>/g1, the router in <dataDir>/router. */
  dataDir: string
  /** A group count (named g1..gN) or explicit group ids. */
  groups: number | readonly string[]
  host?: string
  /** Group i (0-based) listens on basePort + i; 0 or absent: any free port. */
  basePort?: number
  /** 0 or absent: any free port. */
  routerPort?: number
  workers?: number
  synchronous?: string
  /** When set, each process's output is appended to <logDir>/<name>.log. */
  logDir?: string
  detached?: boolean
  readyTimeoutMs?: number
  env?: NodeJS.ProcessEnv
  shardArgs?: string[]
  routerArgs?: string[]
  /** Called as soon as each process is up, so a signal handler can stop a half-started cluster. */
  onLaunched?: (process: LaunchedProcess) => void
}

export interface LocalShard {
  group: string
  dataDir: string
  process: LaunchedProcess
}

export interface LocalCluster {
  router: LaunchedProcess
  routerDataDir: string
  shards: LocalShard[]
  /** Router first, then shards: the order stopAll wants. */
  processes(): LaunchedProcess[]
  stop(timeoutMs?: number): Promise<void>
}

export function groupIds (groups: number | readonly string[]): string[] {
  return typeof groups === 'number' ? Array.from({ length: groups }, (_, i) => `g${i + 1}`) : [...groups]
}

export async function startLocalCluster (opts: LocalClusterOptions): Promise<LocalCluster> {
  const dataDir = resolve(opts.dataDir)
  const ids = groupIds(opts.groups)
  if (ids.length === 0) throw new RangeError('a cluster needs at least one group')
  const logFile = (name: string): string | undefined => opts.logDir === undefined ? undefined : join(opts.logDir, `${name}.log`)
  const common = { host: opts.host, detached: opts.detached, readyTimeoutMs: opts.readyTimeoutMs, env: opts.env }

  // Shards start in parallel (each takes a moment to fork its workers).
  const settled = await Promise.allSettled(ids.map(async (group, i) => {
    const shardDir = join(dataDir, group)
    const p = await launchShard({
      ...common,
      name: group,
      group,
      dataDir: shardDir,
      port: opts.basePort === undefined || opts.basePort === 0 ? 0 : opts.basePort + i,
      workers: opts.workers,
      synchronous: opts.synchronous,
      extraArgs: opts.shardArgs,
      logFile: logFile(group)
    })
    opts.onLaunched?.(p)
    return { group, dataDir: shardDir, process: p }
  }))
  const shards = settled.flatMap((s) => s.status === 'fulfilled' ? [s.value] : [])
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed !== undefined) {
    await stopAll(shards.map((s) => s.process)).catch(() => undefined)
    throw failed.reason
  }

  const routerDataDir = join(dataDir, 'router')
  let router: LaunchedProcess
  try {
    router = await launchRouter({
      ...common,
      name: 'router',
      dataDir: routerDataDir,
      port: opts.routerPort ?? 0,
      groups: shards.map((s) => groupSpec(s.group, s.process)),
      extraArgs: opts.routerArgs,
      logFile: logFile('router')
    })
    opts.onLaunched?.(router)
  } catch (err) {
    await stopAll(shards.map((s) => s.process)).catch(() => undefined)
    throw err
  }

  const processes = (): LaunchedProcess[] => [router, ...shards.map((s) => s.process)]
  return {
    router,
    routerDataDir,
    shards,
    processes,
    stop: (timeoutMs) => stopAll(processes(), timeoutMs)
  }
}
