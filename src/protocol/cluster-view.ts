import type { RingParams, RingMember } from '../ring/ring'
import type { GroupState, NodeRole } from '../membership/map'
import type { Redundancy } from '../replication/redundancy'
import type { RebalanceProgress } from '../membership/rebalance'

/**
 * The body of `GET /cluster`, declared once: the coordinator builds it, the router
 * serves it, and the client, the scripts, the bench and the tests read it. The map's
 * fields (src/membership/map.ts) plus what the coordinator observes of each node.
 */

/** A node as the coordinator's health checks last saw it. */
export type NodeHealth = 'up' | 'down' | 'unknown'

export interface NodeView {
  url: string
  role: NodeRole
  /** Replicas: whether the primary waits for it (only in-sync replicas may be promoted). */
  inSync?: boolean
  /** Replicas: seqs behind the primary, as last reported by both. */
  lag: number | null
  health: NodeHealth
  /** The node's supervisor pid. */
  pid: number | null
  nodeId: string | null
  /** The node's replication position (its highest seq). */
  position: number | null
  lastCheckAt: string | null
  lastError: string | null
}

export interface GroupView {
  id: string
  weight: number
  state: GroupState
  term: number
  /** Ring points the group holds (0 unless active). */
  points: number
  /** In-sync replicas that are not known to be down: how many node losses the group survives. */
  inSyncReplicas: number
  /** `none` while the group has replicas but none in sync (the next primary loss loses it); see src/replication/redundancy.ts. */
  redundancy: Redundancy
  nodes: NodeView[]
}

export interface ClusterView {
  epoch: number
  ring: RingParams
  groups: GroupView[]
  /** While a rebalance has not settled: the ring members before it (as in the map). */
  handover?: { previous: RingMember[] }
  /** The router's rebalance, if one ran since it started (null: none). */
  rebalance?: RebalanceProgress | null
}
