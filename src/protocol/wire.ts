/**
 * Wire definitions shared by the router, shard nodes, client, scripts and tests.
 * This file is the single source of truth for paths and headers; docs/protocol.md
 * documents the same names.
 */

/** Data API: `/kv/<one percent-encoded key segment>`. */
export const KV_PREFIX = '/kv/'
export const HEALTH_PATH = '/healthz'
/** A shard node's readiness (shards/readyz.ts): open like /healthz. */
export const READY_PATH = '/readyz'
export const METRICS_PATH = '/metrics'
export const CLUSTER_PATH = '/cluster'
/**
 * The router's own map, for direct clients to follow: `GET /cluster/map?after=<epoch>&wait=<ms>`,
 * a long poll answered with the map the router routes by as soon as its epoch is past
 * `after`, or 204 after `wait` ms (at most MAP_FOLLOW_MAX_WAIT_MS). Needs the read role.
 */
export const CLUSTER_MAP_PATH = '/cluster/map'
/** Batches of gets, puts and deletes (router and shard nodes alike; see batch.ts). */
export const BATCH_PATH = '/batch'
/** Change streams: `GET /watch?prefix=<p>&since=<cursor>`, Server-Sent Events (src/protocol/watch.ts). */
export const WATCH_PATH = '/watch'
/**
 * The router's dashboard (coordinator/dashboard): the page and its files under `/ui/`, open
 * (they hold no data), and its stream of cluster snapshots, which needs the `read` role.
 */
export const DASHBOARD = { page: '/ui', events: '/ui/events' } as const

/**
 * Admin API of the router (served by its coordinator). JSON in, JSON out.
 *   POST   /admin/groups        {"id","url","weight"}  add a group, start a rebalance (202)
 *   DELETE /admin/groups/<id>                          drain a group out (202)
 *   GET    /admin/rebalance                            the current or last rebalance
 *   POST   /admin/groups/<id>/switchover  {"to"?}      hand the primary role to an in-sync replica (200, WireSwitchoverReply)
 */
export const ADMIN = {
  groups: '/admin/groups',
  rebalance: '/admin/rebalance'
} as const

/** `POST /admin/groups/<id>/switchover`. */
export function switchoverPath (group: string): string {
  return `${ADMIN.groups}/${encodeURIComponent(group)}/switchover`
}

/** The body of a switchover request: the replica to promote (optional; else the coordinator picks one). */
export interface WireSwitchoverRequest {
  to?: string
}

/** The answer of a completed switchover. */
export interface WireSwitchoverReply {
  group: string
  from: string
  to: string
  /** The group's term after the switchover (the old term + 1). */
  term: number
  epoch: number
  /** The fenced primary's final position, which the new primary had reached when promoted. */
  position: number
  /** From the fence to the published map. */
  tookMs: number
}

/**
 * Internal API of shard nodes, called by the coordinator and routers only.
 * Bodies are JSON; values travel base64-encoded.
 */
export const INTERNAL = {
  map: '/internal/map',
  migrationScan: '/internal/migration/scan',
  migrationImport: '/internal/migration/import',
  migrationPurge: '/internal/migration/purge',
  /** Row counts of the node's partition (a full count: for progress estimates, not health checks). */
  stats: '/internal/stats',
  /** `/internal/row/<key>?request=<id>`: what copy on touch moves of a key (a WireKeyTransfer: its row, tombstone included, and the record of request `<id>`). */
  rowPrefix: '/internal/row/',
  /** `?after=<seq>&prefix=<p>&limit=<n>`: the group primary's change feed up to its durable position (a WireFeedReply). */
  feed: '/internal/feed'
} as const

/** What a coordinator serves its routers on its peer listener. */
export const INTERNAL_COORDINATOR = {
  /**
   * router → coordinator: `GET ?after=<epoch>&router=<client URL>`, a long poll answered
   * with a WireMapFollow as soon as the published map's epoch is past `after`, or 204
   * after `wait` ms (at most MAP_FOLLOW_MAX_WAIT_MS) when it is not.
   */
  mapFollow: '/internal/coordinator/map'
} as const

/** Who a coordinator is, as its leader key in etcd says (and its standby's 503s): its client and peer URLs. */
export interface WireLeader {
  url: string
  peer: string
}

/** Longest a map follow is held open before it is answered 204 (routers ask again at once). */
export const MAP_FOLLOW_MAX_WAIT_MS = 30_000

/** A coordinator's answer to a map follow: the published map, and whether it leads (it always does with the file registry). */
export interface WireMapFollow {
  map: unknown
  leader: boolean
}

/** Replication between the nodes of a group, and the coordinator's leases and in-sync changes. */
export const INTERNAL_REPLICATION = {
  /** primary → replica: `{group, term, from, to, rows}`; 409 with the replica's position on a gap. */
  apply: '/internal/replication/apply',
  /** coordinator → primary: `{group, term, leaseUntil}` (ms since the epoch; 0 revokes); answers a WireLeaseReply. */
  lease: '/internal/replication/lease',
  /** primary → coordinator: `{group, url, inSync, term}`; answered once the new map is installed. */
  inSync: '/internal/replication/in-sync',
  /** coordinator → fenced primary, in a planned switchover: a WireHandoff; 409 when it is not fenced or not at that position. */
  handoff: '/internal/replication/handoff'
} as const

/**
 * What every coordinator command to a node carries besides its own fields (map installs,
 * leases, handoffs): the coordinator's URL (where the node sends in-sync changes) and its
 * leadership fence (the etcd leader key's create revision; 0 with the file registry).
 * A node refuses a fence older than the newest it has seen (409 stale_fence).
 */
export interface WireCoordinatorClaim {
  coordinator?: string
  fence?: number
}

/**
 * A shard node's entry in the registry (etcd key /shardkv/<cluster>/nodes/<nodeId>, bound
 * to the node's lease, so it vanishes when the node dies): who it is, which group it
 * was started for, and where it serves.
 */
export interface WireNodeRegistration {
  nodeId: string
  group: string
  url: string
  /** The peer listener, when apart from the data port. */
  peer?: string
  pid: number
  startedAt: string
}

/** A router's entry in the registry (etcd key /shardkv/<cluster>/routers/<url>, on the router's lease). */
export interface WireRouterRegistration {
  url: string
  pid: number
  startedAt: string
}

/** `PUT /internal/map`: install `map` on a node of `group` (`self`: the node's URL in it). */
export interface WireMapInstall extends WireCoordinatorClaim {
  group: string
  self?: string
  map: unknown
}

/** `POST /internal/replication/lease`: the primary of `group` at `term` may serve until `leaseUntil` (0 revokes). */
export interface WireLeaseGrant extends WireCoordinatorClaim {
  group: string
  term: number
  leaseUntil: number
}

/** The primary's answer to a lease: the lease it now holds and its log position, read after the lease was written. */
export interface WireLeaseReply {
  leaseUntil: number
  position: number
}

/**
 * `POST /internal/replication/handoff`: the primary of `group` at `term`, fenced, records that
 * `primary` takes over under `nextTerm` from `position` (see Handoff in src/replication/policy.ts).
 */
export interface WireHandoff {
  group: string
  term: number
  nextTerm: number
  primary: string
  position: number
}

/** Internal headers, all lower-case as Node delivers them. */
export const HEADER = {
  /** The cluster-map epoch the sender routes by (router → shard). */
  epoch: 'x-shardkv-epoch',
  /** Identifies one client write so a retried write is applied once (grammar: request-id.ts). */
  requestId: 'x-shardkv-request-id',
  /** Which shard node served the request (shard → router → client), for debugging. */
  node: 'x-shardkv-node',
  /** Router → old owner: a read of a key still being handed over (rebalance not settled). */
  fallback: 'x-shardkv-fallback',
  /** Shard → router on a 404: the key has a tombstone here (so no fallback read is needed). */
  tombstone: 'x-shardkv-tombstone',
  /** Set by the router on a response when it retried the upstream call. */
  retries: 'x-shardkv-retries',
  /**
   * The cluster secret, on every peer request (coordinator, routers, shard nodes to
   * each other, including the router's forwarded data requests). See src/auth/peer.ts.
   */
  peerAuth: 'x-shardkv-peer-auth',
  /**
   * Router → shard: the name of the client principal a forwarded request is made for
   * (it goes into the request-id fingerprint). Believed only on a request that carries
   * the cluster secret; ignored otherwise.
   */
  principal: 'x-shardkv-principal',
  /**
   * Time to live (src/protocol/ttl.ts): on a PUT, the seconds the value lives (client →
   * router → shard); on a GET's answer, the seconds it has left (shard → router → client).
   */
  ttl: 'x-shardkv-ttl'
} as const

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream'

/** Metric names are part of the operational contract too. */
export const METRIC_PREFIX = 'shardkv_'

/** The JSON object every process prints on stdout once it accepts connections. */
export interface ListeningEvent {
  event: 'listening'
  url: string
  /** Which part this is. (`role` in log lines is the replication role of a shard node.) */
  service: 'router' | 'coordinator' | 'shard'
}

/** A row as migration moves it between nodes (value base64-encoded). */
export interface WireRow {
  key: string
  value: string
  contentType: string
  version: string
  deleted?: boolean
  /** When the row expires (ms since the epoch; absent: never). A tombstone keeps it when the expiry deleted it. */
  expiresAt?: number
}

/** An applied-request record as replication, migration and copy on touch move it (storage/applied-requests.ts). */
export interface WireAppliedRequest {
  id: string
  key: string
  /** When the sender issued the id (ms since the epoch): what expiry goes by. */
  issued: number
  fingerprint: string
  /** The write's seq on the node that holds the record (an imported record gets a fresh local seq, like imported rows). */
  seq: number
  version: string
  /** The key held a value before the write (a PUT answered 200, not 201). */
  existed: boolean
}

/**
 * What moves with keys to their new owner (a migration batch, or one key copied on
 * touch): rows, the applied-request records of those keys, and the sender's
 * request-id floor. `POST /internal/migration/import` takes it; `GET /internal/row/<key>?request=<id>`
 * answers it (rows: the key's row, tombstone included, or none; requests: the record of `<id>`, if any).
 */
export interface WireKeyTransfer {
  rows: WireRow[]
  requests: WireAppliedRequest[]
  floor: number
}

/** `POST /internal/migration/scan`'s answer. */
export interface WireScanReply extends WireKeyTransfer {
  next: number
  scanned: number
  done: boolean
  epoch: number
}

/**
 * `POST /internal/replication/in-sync` (primary → coordinator): a replica of `group` joins
 * (`inSync: true`) or leaves the set the primary waits for, asked at the primary's `term`.
 */
export interface WireInSyncChange {
  group: string
  url: string
  inSync: boolean
  term: number
  /** The asking primary's data URL: with a cluster secret, only the group's primary may ask (src/auth/senders.ts). */
  sender?: string
}
