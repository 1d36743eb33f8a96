import { ShardKvError } from '../protocol/errors'
import type { ClusterMap } from '../membership/map'
import type { RebalanceState } from '../membership/rebalance'

/**
 * Where the cluster map lives: the one interface the coordinator writes through and
 * routers and clients follow. Two kinds:
 *  - `file`: the embedded default, the map in the coordinator's data dir (one coordinator);
 *  - `etcd`: the map in an etcd cluster, written only by the elected coordinator, each
 *    write a transaction guarded by its leadership, followed by watches.
 */
export type RegistryKind = 'file' | 'etcd'

export interface RegistryState {
  /** The published map (undefined before the first one). */
  map: ClusterMap | undefined
  /** The map of a transition that was being installed (DESIGN: install before publish). */
  pending: ClusterMap | undefined
}

/**
 * A write refused because this writer no longer leads, or someone else changed the map, or
 * whose outcome is unknown. To a client it is 503 `unavailable` (the control plane could not
 * act: read the view before repeating), never a 500.
 */
export class RegistryConflict extends ShardKvError {
  constructor (message: string) {
    super('unavailable', message)
    this.name = 'RegistryConflict'
  }
}

export interface MapWatch {
  close: () => Promise<void>
}

export interface MapRegistry {
  readonly kind: RegistryKind
  /** Where the map is, for logs and errors (a file path, or etcd endpoints and the cluster's prefix). */
  readonly where: string
  /** Reads both maps, and remembers what it read as the base the next write is guarded on. */
  load: () => Promise<RegistryState>
  /** Records the intent: the map a transition is about to install. */
  savePending: (next: ClusterMap) => Promise<void>
  /** Makes `next` the published map and clears the intent, in one step. */
  publish: (next: ClusterMap) => Promise<void>
  /** The state of the last rebalance (running or done), undefined when there was none. */
  loadRebalance: () => Promise<RebalanceState | undefined>
  /** Persists a rebalance's state (after every phase change and batch), guarded like the map. */
  saveRebalance: (state: RebalanceState) => Promise<void>
  /** Calls `onMap` with every published map newer than `afterEpoch`, in order. */
  watch: (afterEpoch: number, onMap: (map: ClusterMap) => void) => MapWatch
  close: () => Promise<void>
}
