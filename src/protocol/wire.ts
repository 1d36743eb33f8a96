/**
 * Wire definitions shared by the router, shard nodes, client, scripts and tests.
 * This file is the single source of truth for paths and headers; the README's
 * "Wire protocol" section documents the same names.
 */

/** Data API: `/kv/<one percent-encoded key segment>`. */
export const KV_PREFIX = '/kv/'
export const HEALTH_PATH = '/healthz'
export const METRICS_PATH = '/metrics'
export const CLUSTER_PATH = '/cluster'

/** Internal headers, all lower-case as Node delivers them. */
export const HEADER = {
  /** The cluster-map epoch the sender routes by (router → shard). */
  epoch: 'x-shardkv-epoch',
  /** Identifies one client write so a retried write is applied at most once. */
  requestId: 'x-shardkv-request-id',
  /** Which shard node served the request (shard → router → client), for debugging. */
  node: 'x-shardkv-node',
  /** Set by the router on a response when it retried the upstream call. */
  retries: 'x-shardkv-retries'
} as const

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream'

/** Metric names are part of the operational contract too. */
export const METRIC_PREFIX = 'shardkv_'

/** The JSON object every process prints on stdout once it accepts connections. */
export interface ListeningEvent {
  event: 'listening'
  url: string
  role: 'router' | 'shard'
}
