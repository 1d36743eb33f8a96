import { BATCH_OP, BATCH_RESULT } from './batch'
import { CLUSTER_VIEW, GROUP_VIEW, NODE_VIEW, REBALANCE_PROGRESS } from './cluster'
import { ERROR_BODY, type JsonSchema } from './common'

export * from './common'
export { KV_SCHEMAS, type KvMethodName } from './kv'
export { BATCH_SCHEMA, BATCH_REFUSED_SCHEMA } from './batch'
export { HEALTH_SCHEMA, READY_SCHEMA, METRICS_SCHEMA, CLUSTER_SCHEMA, CLUSTER_MAP_SCHEMA, OPENAPI_SCHEMA, DOCS_SCHEMA } from './cluster'
export { CHECK_DIGEST_SCHEMA } from './check'
export { WATCH_SCHEMA } from './watch'
export { ADD_GROUP_SCHEMA, REMOVE_GROUP_SCHEMA, REBALANCE_SCHEMA, ADD_REPLICA_SCHEMA, REMOVE_REPLICA_SCHEMA, SWITCHOVER_SCHEMA, RELAYED_ROUTES } from './admin'

/** Where the router serves its OpenAPI description, and the HTML page rendered from it (both open). */
export const OPENAPI_PATH = '/openapi.json'
export const DOCS_PATH = '/docs'

/** Shapes the route schemas reference as `<$id>#`: the description's components.schemas. */
export const SHARED_SCHEMAS: readonly JsonSchema[] = [ERROR_BODY, NODE_VIEW, GROUP_VIEW, REBALANCE_PROGRESS, CLUSTER_VIEW, BATCH_OP, BATCH_RESULT]

export const API_TAGS = [
  { name: 'data', description: 'Keys and values: `/kv/{key}`' },
  { name: 'batch', description: 'Many operations in one request' },
  { name: 'cluster', description: 'Health, metrics, the cluster view and this description' },
  { name: 'admin', description: 'Groups, replicas, rebalances and switchovers (the admin role)' }
] as const

export const API_INFO = {
  title: 'shardkv router',
  description: 'The public HTTP API of a shardkv router: the data API, batches, the cluster view and the admin API. ' +
    'Every error is a JSON body `{"error": "<code>", "message": "<text>"}` (components.schemas.ErrorBody). ' +
    'Peer-only /internal/* endpoints are not part of it. Reference: docs/api.md.',
  version: '0.1.0'
} as const
