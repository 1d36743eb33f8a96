import { CLUSTER_VIEW_MAX_BYTES } from '../protocol/limits'
import { ADMIN, CLUSTER_PATH, switchoverPath, type WireSwitchoverReply, type WireSwitchoverRequest } from '../protocol/wire'
import type { RebalanceProgress } from '../membership/rebalance'
import { Agent, type Dispatcher } from '../http/undici'
import { jsonRequest } from './http'
import { credentialHeaders, type Credentials } from './transport'
import type { ClusterView } from '../protocol/cluster-view'

/** What `GET /cluster` returns: one type, src/protocol/cluster-view.ts. */
export type { ClusterView }

/** The router's admin API, as the scripts use it. */
export class AdminClient {
  private readonly headers: Readonly<Record<string, string>>
  /** Only for a private CA (`ca`); otherwise undici's global dispatcher. */
  private readonly dispatcher: Dispatcher | undefined

  /** `credentials`: an admin token, and the CA of an https router. */
  constructor (readonly routerUrl: string, credentials: Credentials = {}) {
    this.headers = credentialHeaders(credentials)
    this.dispatcher = credentials.ca === undefined ? undefined : new Agent({ connect: { ca: credentials.ca } })
  }

  /** Closes the connections of a client made with a `ca` (nothing to do otherwise). */
  async close (): Promise<void> {
    await this.dispatcher?.close()
  }

  private async call<T> (url: string, options: { method?: Dispatcher.HttpMethod, body?: unknown, maxBytes?: number } = {}): Promise<{ status: number, body: T }> {
    return await jsonRequest<T>(url, { ...options, headers: this.headers, dispatcher: this.dispatcher })
  }

  async cluster (): Promise<ClusterView> {
    return (await this.call<ClusterView>(this.routerUrl + CLUSTER_PATH, { maxBytes: CLUSTER_VIEW_MAX_BYTES })).body
  }

  async addGroup (id: string, url: string, weight: number, replicas: string[] = []): Promise<RebalanceProgress> {
    const res = await this.call<{ rebalance: RebalanceProgress }>(this.routerUrl + ADMIN.groups, { method: 'POST', body: { id, url, weight, replicas } })
    return res.body.rebalance
  }

  /** With the etcd registry: the group of the nodes registered under `id` (the first started is the primary). */
  async addRegisteredGroup (id: string, weight: number): Promise<RebalanceProgress> {
    const res = await this.call<{ rebalance: RebalanceProgress }>(this.routerUrl + ADMIN.groups, { method: 'POST', body: { id, weight } })
    return res.body.rebalance
  }

  async addReplica (group: string, url: string): Promise<void> {
    await this.call(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(group)}/replicas`, { method: 'POST', body: { url } })
  }

  async removeReplica (group: string, url: string): Promise<void> {
    await this.call(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(group)}/replicas?url=${encodeURIComponent(url)}`, { method: 'DELETE' })
  }

  async removeGroup (id: string): Promise<RebalanceProgress> {
    const res = await this.call<{ rebalance: RebalanceProgress }>(`${this.routerUrl}${ADMIN.groups}/${encodeURIComponent(id)}`, { method: 'DELETE' })
    return res.body.rebalance
  }

  /** Hands the group's primary role to an in-sync replica (`to`, or one the coordinator picks); resolves once it is done. */
  async switchover (group: string, to?: string): Promise<WireSwitchoverReply> {
    const body: WireSwitchoverRequest = to === undefined ? {} : { to }
    return (await this.call<WireSwitchoverReply>(this.routerUrl + switchoverPath(group), { method: 'POST', body })).body
  }

  async rebalance (): Promise<RebalanceProgress | null> {
    return (await this.call<{ rebalance: RebalanceProgress | null }>(this.routerUrl + ADMIN.rebalance)).body.rebalance
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
