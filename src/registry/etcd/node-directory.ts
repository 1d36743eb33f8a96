import { setTimeout as sleep } from 'node:timers/promises'
import type { WireNodeRegistration } from '../../protocol/wire'
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
 * A shard node's self-registration: its entry under a lease it keeps alive, so that the
 * registry always lists the nodes that run (seed 12.2.4: instances join and leave a
 * service registry; Kubernetes pods, TiKV stores registering with PD). A node whose
 * lease ran out while it lives (etcd was out of reach) registers again as soon as it
 * can; a clean stop revokes the lease, so the entry goes at once rather than after the TTL.
 */
export class NodeRegistration {
  private lease: string | undefined
  private stopped = false
  private readonly loop: Promise<void>
  private readonly key: string

  constructor (
    private readonly gateway: EtcdGateway,
    cluster: string,
    private readonly entry: WireNodeRegistration,
    private readonly ttlSeconds: number,
    private readonly events: RegistrationEvents = {}
  ) {
    this.key = `${clusterKeys(cluster).nodes}${entry.nodeId}`
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
  const r = await gateway.range(clusterKeys(cluster).nodes, { prefix: true })
  const nodes: WireNodeRegistration[] = []
  for (const kv of r.kvs) {
    try {
      nodes.push(JSON.parse(unb64(kv.value)) as WireNodeRegistration)
    } catch { /* not an entry this version wrote */ }
  }
  return nodes
}
