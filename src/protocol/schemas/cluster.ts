import type { GroupState, NodeRole } from '../../membership/map'
import type { RebalanceKind, RebalancePhase } from '../../membership/rebalance'
import type { Redundancy } from '../../replication/redundancy'
import type { NodeHealth } from '../cluster-view'
import { errorResponses, OPEN, ROLE_ERRORS, TOKEN, type JsonSchema, type RouteSchema } from './common'

/**
 * `GET /cluster`, `/healthz`, `/metrics`, and the description itself (`/openapi.json`,
 * `/docs`). The shared shapes here mirror src/protocol/cluster-view.ts and
 * src/membership/{map,rebalance}.ts; their enums are checked against those types below,
 * and the integration test validates real answers against them.
 */

/** Every member of the union T, no more: a compile error when a type gains or loses one. */
function everyMember<T extends string> () {
  return <const A extends readonly T[]>(...values: A & ([T] extends [A[number]] ? unknown : never)): string[] => [...values]
}

const NULLABLE_INT = { type: ['integer', 'null'] }
const NULLABLE_STRING = { type: ['string', 'null'] }

export const NODE_VIEW: JsonSchema = {
  $id: 'NodeView',
  type: 'object',
  required: ['url', 'role', 'lag', 'health', 'pid', 'nodeId', 'position', 'lastCheckAt', 'lastError'],
  properties: {
    url: { type: 'string' },
    role: { type: 'string', enum: everyMember<NodeRole>()('primary', 'replica') },
    inSync: { type: 'boolean', description: 'Replicas: whether the primary waits for it (only in-sync replicas may be promoted)' },
    lag: { ...NULLABLE_INT, description: 'Replicas: seqs behind the primary' },
    health: { type: 'string', enum: everyMember<NodeHealth>()('up', 'down', 'unknown') },
    pid: { ...NULLABLE_INT, description: 'The node\'s supervisor pid' },
    nodeId: NULLABLE_STRING,
    position: { ...NULLABLE_INT, description: 'The node\'s replication position (its highest seq)' },
    lastCheckAt: { ...NULLABLE_STRING, description: 'ISO 8601' },
    lastError: NULLABLE_STRING
  },
  additionalProperties: true
}

const RING_MEMBER = { type: 'object', required: ['id', 'weight'], properties: { id: { type: 'string' }, weight: { type: 'number' } } }

export const GROUP_VIEW: JsonSchema = {
  $id: 'GroupView',
  type: 'object',
  required: ['id', 'weight', 'state', 'term', 'points', 'inSyncReplicas', 'redundancy', 'nodes'],
  properties: {
    id: { type: 'string' },
    weight: { type: 'number' },
    state: { type: 'string', enum: everyMember<GroupState>()('active', 'draining') },
    term: { type: 'integer' },
    points: { type: 'integer', description: 'Ring points the group holds (0 unless active)' },
    inSyncReplicas: { type: 'integer', description: 'In-sync replicas not known to be down: how many node losses the group survives' },
    redundancy: { type: 'string', enum: everyMember<Redundancy>()('ok', 'none', 'unreplicated') },
    nodes: { type: 'array', items: { $ref: 'NodeView#' } }
  },
  additionalProperties: true
}

export const REBALANCE_PROGRESS: JsonSchema = {
  $id: 'RebalanceProgress',
  type: 'object',
  required: ['id', 'kind', 'group', 'phase', 'scanned', 'copied', 'deleted', 'estimatedRows', 'keysPerSecond', 'etaSeconds', 'percent', 'startedAt'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: everyMember<RebalanceKind>()('add', 'remove') },
    group: { type: 'string' },
    phase: { type: 'string', enum: everyMember<RebalancePhase>()('fencing', 'copying', 'settling', 'purging', 'finishing', 'done') },
    scanned: { type: 'integer' },
    copied: { type: 'integer' },
    deleted: { type: 'integer' },
    estimatedRows: { type: 'integer' },
    keysPerSecond: { type: 'number' },
    etaSeconds: { type: ['number', 'null'] },
    percent: { type: 'number', minimum: 0, maximum: 100 },
    startedAt: { type: 'string' },
    finishedAt: { type: 'string' },
    lastError: { type: 'string' }
  },
  additionalProperties: true
}

export const CLUSTER_VIEW: JsonSchema = {
  $id: 'ClusterView',
  type: 'object',
  required: ['epoch', 'ring', 'groups'],
  properties: {
    epoch: { type: 'integer' },
    ring: { type: 'object', required: ['vnodesPerWeight', 'algorithm'], properties: { vnodesPerWeight: { type: 'integer' }, algorithm: { type: 'string', enum: ['md5'] } } },
    groups: { type: 'array', items: { $ref: 'GroupView#' } },
    handover: { type: 'object', description: 'While a rebalance is unsettled: the ring members before it', required: ['previous'], properties: { previous: { type: 'array', items: RING_MEMBER } } },
    rebalance: { anyOf: [{ $ref: 'RebalanceProgress#' }, { type: 'null' }], description: 'The router\'s rebalance, if one ran since it started' }
  },
  additionalProperties: true
}

export const HEALTH_SCHEMA: RouteSchema = {
  operationId: 'health',
  summary: 'Liveness of the router',
  description: 'Open: needs no token (load balancers, probes).',
  tags: ['cluster'],
  security: OPEN,
  'x-shardkv-auth': 'open',
  response: {
    200: {
      description: 'The router is up',
      type: 'object',
      required: ['status', 'role', 'epoch'],
      properties: { status: { type: 'string', enum: ['ok'] }, role: { type: 'string', enum: ['router', 'coordinator'] }, epoch: { type: 'integer', description: 'The epoch of the map the process routes by (a router) or published (a coordinator)' }, leader: { type: 'boolean', description: 'A coordinator only: whether it holds the leadership' } }
    }
  }
}

export const READY_SCHEMA: RouteSchema = {
  operationId: 'ready',
  summary: 'Readiness of the router',
  description: 'Open: needs no token. 200 once the router holds a cluster map to route by; 503 `unavailable` before (its coordinator or etcd has not answered yet).',
  tags: ['cluster'],
  security: OPEN,
  'x-shardkv-auth': 'open',
  response: {
    200: {
      description: 'The router routes by a map',
      type: 'object',
      required: ['ready', 'epoch'],
      properties: { ready: { type: 'boolean', enum: [true] }, epoch: { type: 'integer', description: 'The epoch of the map it routes by' } }
    },
    ...errorResponses(['unavailable'])
  }
}

export const METRICS_SCHEMA: RouteSchema = {
  operationId: 'metrics',
  summary: 'Prometheus metrics',
  description: 'Text exposition format; every name starts with `shardkv_`. Needs the admin role.',
  tags: ['cluster'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  produces: ['text/plain'],
  response: {
    200: { description: 'The metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
    ...errorResponses(ROLE_ERRORS)
  }
}

export const CLUSTER_SCHEMA: RouteSchema = {
  operationId: 'cluster',
  summary: 'The cluster map and what the coordinator sees of it',
  description: 'Epoch, ring, groups and their nodes (role, health, replication position and lag), the handover while a ' +
    'rebalance is unsettled, and the rebalance\'s progress. Needs the read role.',
  tags: ['cluster'],
  security: TOKEN,
  'x-shardkv-auth': 'read',
  response: { 200: { description: 'The cluster view', $ref: 'ClusterView#' }, ...errorResponses(ROLE_ERRORS) }
}

export const CLUSTER_MAP_SCHEMA: RouteSchema = {
  operationId: 'clusterMap',
  summary: 'Follow the map this router routes by (long poll)',
  description: 'What direct clients follow instead of polling: answered with the router\'s map as soon as its epoch is past ' +
    '`after`, or 204 after `wait` ms with nothing newer. The map alone (epoch, ring, groups, handover): no health, ' +
    'no positions. Served by the router itself, so it keeps answering while the control plane is away. Needs the read role.',
  tags: ['cluster'],
  security: TOKEN,
  'x-shardkv-auth': 'read',
  querystring: {
    type: 'object',
    properties: {
      after: { type: 'integer', minimum: -1, description: 'The epoch the caller holds (default -1: answer at once)' },
      wait: { type: 'integer', minimum: 0, maximum: 30000, description: 'How long to hold the request open, in ms (default 0)' }
    }
  },
  response: {
    200: { description: 'A map newer than `after`', type: 'object', required: ['epoch', 'ring', 'groups'], additionalProperties: true, properties: { epoch: { type: 'integer' }, ring: { type: 'object', additionalProperties: true }, groups: { type: 'array', items: { type: 'object', additionalProperties: true } } } },
    204: { description: 'Nothing newer within `wait`', type: 'null' },
    ...errorResponses(['invalid_request', ...ROLE_ERRORS, 'unavailable'])
  }
}

export const OPENAPI_SCHEMA: RouteSchema = {
  operationId: 'openapi',
  summary: 'This description (OpenAPI 3.1)',
  description: 'Open, like /healthz: it describes the API, not the cluster.',
  tags: ['cluster'],
  security: OPEN,
  'x-shardkv-auth': 'open',
  response: { 200: { description: 'The OpenAPI document', type: 'object', additionalProperties: true } }
}

export const DOCS_SCHEMA: RouteSchema = {
  operationId: 'docs',
  summary: 'This description as an HTML page',
  description: 'Rendered by the router from /openapi.json; no scripts. Open.',
  tags: ['cluster'],
  security: OPEN,
  'x-shardkv-auth': 'open',
  produces: ['text/html'],
  response: { 200: { description: 'The page', content: { 'text/html': { schema: { type: 'string' } } } } }
}
