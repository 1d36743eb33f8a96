import { ringFor, type GroupRing, type RingMember } from '../ring/ring'
import { termOf, type ClusterMap, type NodeInfo } from './map'

/**
 * What a shard node may do with a key under the map it has installed.
 *  - owned:    the node's group owns the key in the current ring: reads and writes.
 *  - handover: the group owned it in the previous ring and a rebalance has not settled:
 *              the key is frozen here (writes refused) but fallback reads are served
 *              so that a reader can still find keys not yet copied to the new owner.
 *  - foreign:  neither: refuse (421) so the sender refreshes its map.
 * Before any map is installed (a standalone node) everything is owned.
 */
export type Access = 'owned' | 'handover' | 'foreign'

/**
 * A node's part in its group under the installed map. Without a map, or when the
 * installer did not say which node this is, the node acts as a lone primary.
 */
export type NodeRoleView = 'primary' | 'replica'

export class Ownership {
  readonly epoch: number
  readonly group: string | undefined
  readonly role: NodeRoleView
  /** The group's term: replication shipments and leases must carry it. */
  readonly term: number
  /** The other nodes of this node's group (replicas, when this node is the primary). */
  readonly peers: readonly NodeInfo[]
  private readonly ring: GroupRing | undefined
  private readonly previous: GroupRing | undefined

  constructor (map: ClusterMap | undefined, group: string | undefined, self?: string) {
    this.epoch = map?.epoch ?? 0
    this.group = group
    const info = map?.groups.find((g) => g.id === group)
    this.term = info !== undefined ? termOf(info) : 1
    const me = self === undefined ? undefined : info?.nodes.find((n) => n.url === self)
    this.role = me === undefined || me.role === 'primary' ? 'primary' : 'replica'
    this.peers = me === undefined ? [] : (info?.nodes.filter((n) => n.url !== self) ?? [])
    if (map === undefined || group === undefined) return
    this.ring = ringFor(currentMembers(map), map.ring)
    if (map.handover !== undefined) this.previous = ringFor(map.handover.previous, map.ring)
  }

  /** True while a rebalance is unsettled (rows handed over must stay until it settles). */
  get handoverPending (): boolean {
    return this.previous !== undefined
  }

  /** True when a failover could replace this primary: then it serves only under a lease. */
  get needsLease (): boolean {
    return this.role === 'primary' && this.peers.length > 0
  }

  access (key: string): Access {
    if (this.ring === undefined) return 'owned'
    if (this.ring.ownerOf(key) === this.group) return 'owned'
    if (this.previous !== undefined && this.previous.ownerOf(key) === this.group) return 'handover'
    return 'foreign'
  }

  /** True for a key this group holds but must give away (migration source). */
  isMovingAway (key: string): boolean {
    return this.access(key) === 'handover'
  }
}

/** Groups on the current ring: the active ones (draining ones are leaving). */
export function currentMembers (map: ClusterMap): RingMember[] {
  return map.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight }))
}
