import { ringFor, type GroupRing } from '../ring/ring'
import { ringOf, type ClusterMap, type NodeRole } from './map'

/**
 * One immutable snapshot of the cluster map prepared for routing: the ring, each
 * group's primary, and the epoch header value. The coordinator swaps whole tables,
 * so a request that reads one table routes by one consistent map even while the
 * map changes underneath it.
 */

export interface TableNode {
  group: string
  url: string
  role: NodeRole
}

export class RoutingTable {
  readonly map: ClusterMap
  readonly epoch: number
  /** The `x-shardkv-epoch` value, formatted once rather than per request. */
  readonly epochHeader: string
  /** Ring points per group (0 for groups not on the ring: draining ones). */
  readonly points: ReadonlyMap<string, number>
  readonly nodes: readonly TableNode[]
  private readonly ring: GroupRing
  /** The ring before an unsettled rebalance (undefined when settled). */
  private readonly previous: GroupRing | undefined
  private readonly primaries: Map<string, string>

  constructor (map: ClusterMap) {
    this.map = map
    this.epoch = map.epoch
    this.epochHeader = String(map.epoch)
    this.ring = ringOf(map)
    this.previous = map.handover !== undefined ? ringFor(map.handover.previous, map.ring) : undefined
    this.points = this.ring.pointCounts()
    this.primaries = new Map()
    const nodes: TableNode[] = []
    for (const g of map.groups) {
      for (const n of g.nodes) {
        nodes.push({ group: g.id, url: n.url, role: n.role })
        if (n.role === 'primary') this.primaries.set(g.id, n.url)
      }
    }
    this.nodes = nodes
  }

  /** The group that owns `key` under this map, or undefined when no group is on the ring. */
  groupOf (key: string): string | undefined {
    return this.ring.ownerOf(key)
  }

  /**
   * While a rebalance is unsettled: the primary of the key's previous owner when the
   * key is moving (its new owner may not have a copy yet), otherwise undefined.
   */
  handoverSourceOf (key: string): string | undefined {
    if (this.previous === undefined) return undefined
    const before = this.previous.ownerOf(key)
    if (before === undefined || before === this.ring.ownerOf(key)) return undefined
    return this.primaries.get(before)
  }

  /** URL of the primary that serves `key`, or undefined when no group owns it. */
  ownerOf (key: string): string | undefined {
    const group = this.ring.ownerOf(key)
    return group === undefined ? undefined : this.primaries.get(group)
  }
}
