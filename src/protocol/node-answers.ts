import type { NodeRoleView } from '../membership/ownership'

/**
 * Bodies a shard node answers with, declared once for the node that sends them and
 * every reader (coordinator, scripts, tests).
 */

/** `GET /healthz` of a shard node (a worker answers; the supervisor's pid is `pid`). */
export interface ShardHealth {
  status: 'ok' | 'draining'
  service: 'shard'
  nodeId: string
  group: string
  /** The supervisor's pid. */
  pid: number
  /** The pid of the worker that answered, and of all the node's workers. */
  workerPid: number
  workerPids: number[]
  /** The highest seq in the node's log. */
  position: number
  /** The epoch of the installed map (0: none). */
  epoch: number
  /** The group's term in the installed map, and the term of the data the node holds. */
  term: number
  dataTerm: number
  role: NodeRoleView
  /** The highest seq every replica the primary waits for has acknowledged. */
  replicated: number
  /** The node's peer listener, when it has one (peerUrlOf in src/membership/map.ts derives its URL). */
  peerPort?: number
  peerTls: boolean
}

/** `GET /internal/stats`: live keys, tombstones and the log position. */
export interface NodeStats {
  keys: number
  tombstones: number
  position: number
  /** The change feed watch streams read (src/storage/feed.ts): entries held, the oldest one's commit time, the floor. */
  feed: { entries: number, oldestAt: number | null, floor: number }
}
