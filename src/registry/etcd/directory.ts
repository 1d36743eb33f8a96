import { setTimeout as sleep } from 'node:timers/promises'
import type { WireNodeRegistration, WireRouterRegistration } from '../../protocol/wire'
import type { EtcdGateway } from './gateway'
import { clusterKeys } from './etcd-registry'
import { unb64 } from './wire'
import { renewalIntervalMs } from '../leadership-policy'

export interface RegistrationEvents {
  onRegistered?: (lease: string) => void
  /** The lease ran out (etcd unreachable longer than the TTL): registering again. */
  onLost?: (why: string) => void
}

/**
 * The service directory in etcd: shard nodes and routers register themselves, each its
 * entry under a lease it keeps alive, so that the registry always lists what runs (seed
 * 12.2.4: instances join and leave a service registry; Kubernetes pods, TiKV stores
 * registering with PD). A process whose lease ran out while it lives (etcd was out of
 * reach) registers again as soon as it can; a clean stop revokes the lease, so the entry
 * goes at once rather than after the TTL.
 */

/** Where a node's or a router's entry lives (routers by their client URL, which names them). */
export function nodeEntryKey (cluster: string, nodeId: string): string {
  return `${clusterKeys(cluster).nodes}${nodeId}`
}

export function routerEntryKey (cluster: string, url: string): string {
  return `${clusterKeys(cluster).routers}${encodeURIComponent(url)}`
}

export class Registration {
  private lease: string | undefined
  private stopped = false
  private readonly loop: Promise<void>

  constructor (
    private readonly gateway: EtcdGateway,
    private readonly key: string,
    private readonly entry: WireNodeRegistration | WireRouterRegistration,
    private readonly ttlSeconds: number,
    private readonly events: RegistrationEvents = {}
  ) {
    this.loop = this.run()
  }

  /** Deregisters (revokes the lease) and stops renewing. */
  async close (): Promise<void> {
    this.stopped = true
    await this.loop
    const lease = this.lease
    this.lease = undefined
    if (lease !== undefined) await this.gateway.leaseRevoke(lease).catch(() => undefined)
  }

  private async run (): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.lease === undefined) await this.register()
        else if (await this.gateway.leaseKeepAlive(this.lease) === 0) {
          this.lease = undefined
          this.events.onLost?.('the registration lease expired in etcd')
          continue
        }
      } catch (err) {
        // Unreachable: keep trying; the entry lasts until the lease runs out.
        if (this.lease === undefined) this.events.onLost?.((err as Error).message)
      }
      await sleep(renewalIntervalMs(this.ttlSeconds * 1000))
    }
  }

  private async register (): Promise<void> {
    const lease = await this.gateway.leaseGrant(this.ttlSeconds)
    // A repeated put under the same lease is harmless: the same entry, the same lease.
    await this.gateway.call('/v3/kv/put', {
      key: Buffer.from(this.key).toString('base64'),
      value: Buffer.from(JSON.stringify(this.entry)).toString('base64'),
      lease: lease.id
    }, true)
    this.lease = lease.id
    this.events.onRegistered?.(lease.id)
  }
}

/** Every node registered in `cluster` now (live nodes: entries of dead ones expire with their lease). */
export async function registeredNodes (gateway: EtcdGateway, cluster: string): Promise<WireNodeRegistration[]> {
  return await entriesUnder<WireNodeRegistration>(gateway, clusterKeys(cluster).nodes)
}

/** Every router registered in `cluster` now. */
export async function registeredRouters (gateway: EtcdGateway, cluster: string): Promise<WireRouterRegistration[]> {
  return await entriesUnder<WireRouterRegistration>(gateway, clusterKeys(cluster).routers)
}

async function entriesUnder<T> (gateway: EtcdGateway, prefix: string): Promise<T[]> {
  const r = await gateway.range(prefix, { prefix: true })
  const entries: T[] = []
  for (const kv of r.kvs) {
    try {
      entries.push(JSON.parse(unb64(kv.value)) as T)
    } catch { /* not an entry this version wrote */ }
  }
  return entries
}
