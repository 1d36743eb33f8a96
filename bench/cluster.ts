import { join } from 'node:path'
import { groupSpec, launchControlPlane, launchShard, type LaunchedProcess } from '../src/local/launcher'
import type { BenchContext } from './context'
import { benchKey, preloadBatched } from './preload'

/**
 * One scenario's cluster: N groups (a primary each, plus `replicas` replica nodes, none
 * by default) and a router over them, in the scenario's own directory. Built from the
 * launcher's single-process starts rather than startLocalCluster because scenarios vary
 * what that does not expose per role: node flags for the router or the nodes alone
 * (--cpu-prof) and shard flags per cluster.
 */

export const HOST = '127.0.0.1'

export interface BenchClusterOptions {
  name: string
  groups: number
  /** Extra shard node flags (e.g. --group-commit-max-ops 1). */
  shardArgs?: string[]
  synchronous?: string
  /** Node flags for the router process (e.g. --cpu-prof). */
  routerNodeArgs?: string[]
  /** Node flags for every shard node process (e.g. --cpu-prof; its workers inherit them). */
  shardNodeArgs?: string[]
  /** Replica nodes per group (default 0). */
  replicas?: number
  /** Worker processes per node; default the suite's --workers; null: the node's own default (npm start's). */
  workers?: number | null
  /** Extra router flags (e.g. --read-coalesce-max-keys 1). */
  routerArgs?: string[]
  /** What the preload presents to the router (a token, a CA for an https router). */
  credentials?: { token?: string, ca?: Buffer }
}

export interface BenchCluster {
  dir: string
  routerUrl: string
  nodes: Array<{ group: string, url: string }>
  processes: LaunchedProcess[]
  /** The keys preloaded by `load`. */
  keys: string[]
  /** Writes `count` keys of `value` through the router. */
  load(count: number, value: Buffer): Promise<void>
  stop(): Promise<void>
}

export async function startBenchCluster (ctx: BenchContext, opts: BenchClusterOptions): Promise<BenchCluster> {
  const dir = ctx.scenarioDir(opts.name)
  const processes: LaunchedProcess[] = []
  const started = (p: LaunchedProcess): LaunchedProcess => {
    processes.push(p)
    ctx.track(p)
    return p
  }
  const common = { host: HOST, detached: true }
  const ids = Array.from({ length: opts.groups }, (_, i) => `g${i + 1}`)
  const workers = opts.workers === null ? undefined : opts.workers ?? ctx.opts.workers
  const shard = async (group: string, name: string): Promise<LaunchedProcess> => started(await launchShard({
    ...common,
    name: `${opts.name}-${name}`,
    group,
    dataDir: join(dir, name),
    logFile: join(dir, 'logs', `${name}.log`),
    workers,
    synchronous: opts.synchronous,
    extraArgs: opts.shardArgs,
    nodeArgs: opts.shardNodeArgs
  }))
  try {
    const settled = await Promise.allSettled(ids.map(async (group) => await Promise.all([
      shard(group, group),
      ...Array.from({ length: opts.replicas ?? 0 }, async (_, j) => await shard(group, `${group}-r${j + 1}`))
    ])))
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    const groups = settled.map((s) => (s as PromiseFulfilledResult<LaunchedProcess[]>).value)
    const shards = groups.map((g) => g[0] as LaunchedProcess)
    const plane = await launchControlPlane({
      ...common,
      coordinatorName: `${opts.name}-coordinator`,
      routerName: `${opts.name}-router`,
      dataDir: join(dir, 'coordinator'),
      logFile: join(dir, 'logs', 'coordinator.log'),
      routerLogFile: join(dir, 'logs', 'router.log'),
      groups: groups.map(([primary, ...replicas], i) => groupSpec(ids[i] as string, primary as LaunchedProcess, undefined, replicas)),
      nodeArgs: opts.routerNodeArgs,
      extraArgs: opts.routerArgs
    })
    started(plane.coordinator)
    const router = started(plane.router)
    const keys: string[] = []
    return {
      dir,
      routerUrl: router.url,
      nodes: shards.map((s, i) => ({ group: ids[i] as string, url: s.url })),
      processes,
      keys,
      load: async (count, value) => {
        const fresh = Array.from({ length: count }, (_, i) => benchKey(i))
        await preloadBatched(router.url, fresh, value, opts.credentials)
        keys.splice(0, keys.length, ...fresh)
      },
      stop: () => ctx.stop({ launched: processes, others: [] })
    }
  } catch (err) {
    await ctx.stop({ launched: processes, others: [] }).catch(() => undefined)
    throw err
  }
}
