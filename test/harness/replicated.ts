import type tap from 'tap'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { join } from 'node:path'
import { launchRouter, type LaunchedProcess } from '../../src/local/launcher'
import { sandbox, startShardIn, shardHealth, waitUntilDead, sleep, type Sandbox, type ShardHealth } from './cluster'

/**
 * A cluster whose groups have a primary and replicas, for the replication and
 * failover tests. Nodes are addressed by name (g1, g1-r1, ...) and keep their data dir
 * and port across restarts, so a restarted node comes back where the map expects it.
 */

export interface ReplicatedNode {
  name: string
  group: string
  dataDir: string
  port: number
  url: string
  proc: LaunchedProcess
}


export interface ReplicatedCluster {
  box: Sandbox
  router: LaunchedProcess
  routerUrl: string
  nodes: ReplicatedNode[]
  view: () => Promise<ClusterView>
  /** Polls GET /cluster until `pred` holds. */
  waitForView: (pred: (v: ClusterView) => boolean, what: string, timeoutMs?: number) => Promise<ClusterView>
  node: (url: string) => ReplicatedNode
  health: (node: ReplicatedNode) => Promise<ShardHealth>
  killHard: (node: ReplicatedNode) => Promise<void>
  restart: (node: ReplicatedNode) => Promise<void>
}

export async function startReplicatedCluster (t: tap.Test, opts: { name: string, groups: number, replicas: number, routerArgs?: string[], shardArgs?: string[] }): Promise<ReplicatedCluster> {
  const box = sandbox(t, opts.name)
  const start = async (n: Omit<ReplicatedNode, 'proc' | 'url'>): Promise<LaunchedProcess> => await startShardIn(box, {
    group: n.group, nodeId: n.name, dataDir: n.dataDir, port: n.port, workers: 1, extraArgs: opts.shardArgs
  })
  const specs = Array.from({ length: opts.groups }, (_, i) => `g${i + 1}`).flatMap((group) =>
    Array.from({ length: 1 + opts.replicas }, (_, j) => ({ name: j === 0 ? group : `${group}-r${j}`, group, dataDir: join(box.tmp, j === 0 ? group : `${group}-r${j}`), port: 0 })))
  const nodes: ReplicatedNode[] = await Promise.all(specs.map(async (s) => {
    const proc = await start(s)
    return { ...s, port: Number(new URL(proc.url).port), url: proc.url, proc }
  }))
  const groups = [...new Set(nodes.map((n) => n.group))].map((g) => `${g}=${nodes.filter((n) => n.group === g).map((n) => n.url).join('+')}`)
  const router = await launchRouter({ name: 'router', dataDir: join(box.tmp, 'router'), groups, extraArgs: opts.routerArgs, readyTimeoutMs: 60_000 })
  box.launched.push(router)

  const view = async (): Promise<ClusterView> => await box.http.getJson<ClusterView>(`${router.url}/cluster`)
  const waitForView = async (pred: (v: ClusterView) => boolean, what: string, timeoutMs = 30_000): Promise<ClusterView> => {
    const deadline = Date.now() + timeoutMs
    let last: ClusterView | undefined
    while (Date.now() < deadline) {
      last = await view().catch(() => undefined)
      if (last !== undefined && pred(last)) return last
      await sleep(100)
    }
    throw new Error(`timed out waiting for ${what}; last view: ${JSON.stringify(last)}`)
  }
  const cluster: ReplicatedCluster = {
    box,
    router,
    routerUrl: router.url,
    nodes,
    view,
    waitForView,
    node: (url) => {
      const n = nodes.find((x) => x.url === url)
      if (n === undefined) throw new Error(`no node at ${url}`)
      return n
    },
    health: async (node) => await shardHealth(box, node.url),
    killHard: async (node) => {
      const h = await shardHealth(box, node.url)
      const pids = [h.pid, ...h.workerPids]
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      await waitUntilDead(pids)
    },
    restart: async (node) => {
      let lastErr: unknown
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          node.proc = await start(node)
          return
        } catch (err) {
          lastErr = err
          await sleep(300)
        }
      }
      throw lastErr
    }
  }
  return cluster
}

export function allInSync (v: ClusterView): boolean {
  return v.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || n.inSync === true))
}
