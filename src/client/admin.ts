import { CLUSTER_VIEW_MAX_BYTES } from '../protocol/limits'
import { ADMIN, CLUSTER_PATH } from '../protocol/wire'
import type { RebalanceProgress } from '../membership/rebalance'
import { jsonRequest } from './http'
import type { ClusterView } from '../protocol/cluster-view'

/** What `GET /cluster` returns: one type, src/protocol/cluster-view.ts. */
export type { ClusterView }

/** The router's admin API, as the scripts use it. */
export class AdminClient {
  constructor (readonly routerUrl: string) {}

  async cluster (): Promise<ClusterView> {
    return (await jsonRequest<ClusterView>(this.routerUrl + CLUSTER_PATH, { maxBytes: CLUSTER_VIEW_MAX_BYTES })).body
  }

  async addGroup (id: string, url: string, weight: number, replicas: string[] = []): Promise<RebalanceProgress> {
    const res = await jsonRequest<{ rebalance: RebalanceProgress }>(this.routerUrl + ADMIN.groups, { method: 'POST', body: { id, url, weight, replicas } })
    return res.body.rebalance
  }

  async addReplica (group: string, url: string): Promise<void> {
    await jsonRequest(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(group)}/replicas`, { method: 'POST', body: { url } })
  }

  async removeReplica (group: string, url: string): Promise<void> {
    await jsonRequest(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(group)}/replicas?url=${encodeURIComponent(url)}`, { method: 'DELETE' })
  }

  async removeGroup (id: string): Promise<RebalanceProgress> {
    const res = await jsonRequest<{ rebalance: RebalanceProgress }>(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(id)}`, { method: 'DELETE' })
    return res.body.rebalance
  }

  async rebalance (): Promise<RebalanceProgress | null> {
    return (await jsonRequest<{ rebalance: RebalanceProgress | null }>(this.routerUrl + ADMIN.rebalance)).body.rebalance
  }

  /** Polls until the rebalance is done, reporting progress; rejects if it reports an error for too long. */
  async waitForRebalance (onProgress: (p: RebalanceProgress) => void, pollMs = 250, timeoutMs = 3_600_000): Promise<RebalanceProgress> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const p = await this.rebalance()
      if (p === null) throw new Error('no rebalance is known to the coordinator')
      onProgress(p)
      if (p.phase === 'done') return p
      if (Date.now() > deadline) throw new Error(`the rebalance did not finish within ${Math.round(timeoutMs / 1000)} s (phase ${p.phase})`)
      await new Promise((resolve) => setTimeout(resolve, pollMs))
    }
  }
}
