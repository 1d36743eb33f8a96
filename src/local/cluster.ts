import { join, resolve } from 'node:path'
import { groupSpec, launchControlPlane, launchShard, stopAll, type LaunchCredentials, type LaunchedProcess } from './launcher'
import { peerPortFor } from './nodes-file'

/**
 * A whole single-machine cluster: one shard node per group plus a coordinator and a router that know
 * them, started once and not supervised (the benchmark: free ports, a temp dir). `npm
 * start` runs a supervised cluster instead (managed-cluster.ts), with the same launcher.
 * With fixed ports every process also gets a peer listener on its port + 10000, as npm
 * start gives them. With free ports it gets none: the benchmarks restart a killed node on
 * its data port alone, and a free peer port would change under the map's feet.
 */

export interface LocalClusterOptions {
  /** Shard g1 keeps its data in <dataDir>/g1, the coordinator in <dataDir>/coordinator. */
  dataDir: string
  /** A group count (named g1..gN) or explicit group ids. */
  groups: number | readonly string[]
  host?: string
  /** Group i (0-based) listens on basePort + i; 0 or absent: any free port. */
  basePort?: number
  /** 0 or absent: any free port. */
  routerPort?: number
  workers?: number
  /** Replica nodes per group (default 0); replica j of group i listens on basePort + 100*j + i. */
  replicas?: number
  synchronous?: string
  /** When set, each process's output is appended to <logDir>/<name>.log. */
  logDir?: string
  detached?: boolean
  readyTimeoutMs?: number
  env?: NodeJS.ProcessEnv
  shardArgs?: string[]
  routerArgs?: string[]
  /** Flags for node itself in every process (e.g. `--cpu-prof`), as launcher's nodeArgs. */
  nodeArgs?: string[]
  /**
   * Given to every process (make them with ensureCredentials of src/local/credentials.ts).
   * Absent: an unauthenticated cluster — what the benchmarks measure their baseline on.
   */
  credentials?: LaunchCredentials
  /** Called as soon as each process is up, so a signal handler can stop a half-started cluster. */
  onLaunched?: (process: LaunchedProcess) => void
}

export interface LocalShard {
  group: string
  dataDir: string
  process: LaunchedProcess
  /** The group's replica nodes (named <group>-r1, <group>-r2, ...). */
  replicas: LaunchedProcess[]
}

export interface LocalCluster {
  router: LaunchedProcess
  coordinator: LaunchedProcess
  /** Where the coordinator keeps the map. */
  coordinatorDataDir: string
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
  const common = { host: opts.host, detached: opts.detached, readyTimeoutMs: opts.readyTimeoutMs, env: opts.env, credentials: opts.credentials, nodeArgs: opts.nodeArgs }

  const replicaCount = opts.replicas ?? 0
  const launched: LaunchedProcess[] = []
  const node = async (group: string, name: string, port: number): Promise<LaunchedProcess> => {
    const p = await launchShard({
      ...common,
      name,
      group,
      dataDir: join(dataDir, name),
      port: opts.basePort === undefined || opts.basePort === 0 ? 0 : port,
      peerPort: opts.basePort === undefined || opts.basePort === 0 ? undefined : peerPortFor(port),
      workers: opts.workers,
      synchronous: opts.synchronous,
      extraArgs: opts.shardArgs,
      logFile: logFile(name)
    })
    launched.push(p)
    opts.onLaunched?.(p)
    return p
  }
  // Shards start in parallel (each takes a moment to fork its workers).
  const base = opts.basePort ?? 0
  const settled = await Promise.allSettled(ids.map(async (group, i) => {
    const [primary, ...replicas] = await Promise.all([
      node(group, group, base + i),
      ...Array.from({ length: replicaCount }, async (_, j) => await node(group, `${group}-r${j + 1}`, base + 100 * (j + 1) + i))
    ])
    return { group, dataDir: join(dataDir, group), process: primary as LaunchedProcess, replicas }
  }))
  const shards = settled.flatMap((s) => s.status === 'fulfilled' ? [s.value] : [])
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed !== undefined) {
    await stopAll(launched).catch(() => undefined)
    throw failed.reason
  }

  const coordinatorDataDir = join(dataDir, 'coordinator')
  let router: LaunchedProcess
  let coordinator: LaunchedProcess
  try {
    const plane = await launchControlPlane({
      ...common,
      dataDir: coordinatorDataDir,
      port: opts.routerPort === undefined || opts.routerPort === 0 ? 0 : opts.routerPort + 10,
      routerPort: opts.routerPort ?? 0,
      peerPort: peerPortFor(opts.routerPort ?? 0),
      groups: shards.map((s) => groupSpec(s.group, s.process, undefined, s.replicas)),
      extraArgs: opts.routerArgs,
      logFile: logFile('coordinator'),
      routerLogFile: logFile('router')
    })
    router = plane.router
    coordinator = plane.coordinator
    opts.onLaunched?.(coordinator)
    opts.onLaunched?.(router)
  } catch (err) {
    await stopAll(launched).catch(() => undefined)
    throw err
  }

  const processes = (): LaunchedProcess[] => [router, coordinator, ...shards.flatMap((s) => [s.process, ...s.replicas])]
  return {
    router,
    coordinator,
    coordinatorDataDir,
    shards,
    processes,
    stop: (timeoutMs) => stopAll(processes(), timeoutMs)
  }
}
