/**
 * How much a shardkv process takes from a peer or an upstream into memory: the caps
 * that make a hostile (or broken) sender cost it a 413 or a 502, never the heap.
 * Declared once here; the endpoints, clients and validators that enforce them import
 * them, and test/unit/limits.test.ts pins the arithmetic.
 */

const MIB = 1024 * 1024

/**
 * A map has at most this many groups. Far past any deployment shardkv is built for
 * (a group is a primary plus replicas, i.e. several processes), and it bounds every
 * per-group loop the coordinator and the routers run on each map install.
 */
export const MAX_GROUPS = 1024

/**
 * A map's ring has at most this many virtual nodes (the sum over groups of
 * weight × vnodesPerWeight). The ring places 4 points per virtual node, so this is
 * 4,000,000 ring points, every process that installs the map building them. Measured
 * with hashring 3.2.0: 1024 weight-1 groups at the default 2048 vnodes (2.1 M virtual
 * nodes) took ~550 MB of heap and tens of seconds to build; 1 M virtual nodes ~270 MB.
 * With src/ring/continuum.ts, 1 M virtual nodes take ~50 MB and seconds. Both
 * rings of a handover are bounded alike. Valid maps at the defaults hold ~490 groups.
 */
export const MAX_RING_VNODES = 1_000_000

/** Internal bodies (migration imports, replication shipments) are never capped below this. */
const INTERNAL_BODY_FLOOR = 64 * MIB

/**
 * ...nor above this, whatever `--max-value-bytes` says: one request that a peer makes
 * the node buffer and parse is at most this much memory (JSON.parse roughly doubles it).
 * It also caps the rows answers (scans, key transfers) a router reads from a node: no
 * node imports more, so no larger answer could be passed on.
 */
export const INTERNAL_BODY_CEILING = 512 * MIB

/**
 * The largest JSON body a shard node's internal endpoints that carry rows take: room for
 * a scan's worth of rows (4 MiB by default, past which a scan stops at the next row) and
 * at least three largest values, base64-encoded (4/3) in JSON, within [64 MiB, 512 MiB].
 */
export function internalBodyLimit (maxValueBytes: number): number {
  return Math.min(INTERNAL_BODY_CEILING, Math.max(INTERNAL_BODY_FLOOR, 4 * maxValueBytes))
}

/**
 * Value bytes one replication shipment carries at most (past it, the shipment ends
 * after the row that crossed it; a single row of any size still goes alone). Base64 and
 * JSON make the body about 4/3 of this, far below internalBodyLimit's 64 MiB floor, so
 * a backlog of large values ships in several requests instead of one the replica refuses.
 */
export const SHIPMENT_MAX_VALUE_BYTES = 8 * MIB

/**
 * The largest `PUT /internal/map` body (map, group, self, coordinator). A map at
 * MAX_GROUPS with a handful of nodes each is about 1 MiB of JSON.
 */
export const MAP_BODY_LIMIT = 8 * MIB

/**
 * The largest `GET /cluster` answer a client or script reads: the map plus each node's
 * health (about 300 bytes of JSON per node).
 */
export const CLUSTER_VIEW_MAX_BYTES = 16 * MIB

/** The largest answer read from a small control-plane call (health, stats, epochs, acks). */
export const CONTROL_ANSWER_MAX_BYTES = 64 * 1024

/**
 * The default cap on any JSON answer read with jsonRequest; callers expecting more
 * (migration scans, key transfers, the cluster view) pass their own.
 */
export const JSON_ANSWER_MAX_BYTES = MIB

/**
 * Largest value a coalesced write carries (the router's and the direct client's write
 * coalescing); larger ones go alone: a batch of 64 such values stays far below a node's
 * --max-batch-bytes.
 */
export const COALESCED_VALUE_BYTES = 16 * 1024
