import type { ErrorCode } from '../errors'
import { errorResponses, JSON_MEDIA_TYPE, ROLE_ERRORS, TOKEN, type JsonSchema, type RouteSchema } from './common'
import { ADMIN, CLUSTER_PATH } from '../wire'
import { ADMIN_DIGEST_PATH } from '../digest'
import { CLUSTER_SCHEMA } from './cluster'
import { CHECK_DIGEST_SCHEMA } from './check'

/**
 * The admin API (coordinator/admin-api.ts, replication-routes.ts, switchover.ts; routers relay it): JSON in,
 * JSON out, the admin role. The scripts and the `shardkv` CLI drive the same calls.
 */

const JSON_ONLY = {
  type: 'object',
  required: ['content-type'],
  properties: { 'content-type': JSON_MEDIA_TYPE }
}

const GROUP_ID: JsonSchema = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'The group\'s id (e.g. g4)' } } }

/** Errors of any admin call that changes the map (a node that does not answer is 502/503/504). */
const CHANGE_ERRORS: readonly ErrorCode[] = [...ROLE_ERRORS, 'invalid_request', 'unavailable', 'upstream_error', 'upstream_timeout', 'internal']
const JSON_BODY_ERRORS: readonly ErrorCode[] = [...CHANGE_ERRORS, 'unsupported']

const REBALANCE_ANSWER = (description: string): JsonSchema => ({
  description,
  type: 'object',
  required: ['rebalance'],
  properties: { rebalance: { anyOf: [{ $ref: 'RebalanceProgress#' }, { type: 'null' }] } }
})

const NODE_INFO = {
  type: 'object',
  required: ['url', 'role'],
  properties: { url: { type: 'string' }, role: { type: 'string', enum: ['primary', 'replica'] }, inSync: { type: 'boolean' }, peer: { type: 'string' } }
}

const GROUP_ANSWER = (description: string): JsonSchema => ({
  description,
  type: 'object',
  required: ['epoch', 'group'],
  properties: {
    epoch: { type: 'integer', description: 'The epoch of the map with the change' },
    group: {
      type: 'object',
      required: ['id', 'weight', 'state', 'nodes'],
      properties: { id: { type: 'string' }, weight: { type: 'number' }, state: { type: 'string' }, term: { type: 'integer' }, nodes: { type: 'array', items: NODE_INFO } }
    }
  }
})

export const ADD_GROUP_SCHEMA: RouteSchema = {
  operationId: 'addGroup',
  summary: 'Add a group and rebalance keys onto it',
  description: 'The new group\'s nodes must be running, answer, and hold no keys. Answers once the rebalance has started; ' +
    'follow it with GET /admin/rebalance. With the etcd registry, naming neither `url` nor `replicas` takes the nodes registered ' +
    'for the group\'s id (started with `--group <id>` and the cluster\'s `--registry`): the first started is the primary, the others its replicas.',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  headers: JSON_ONLY,
  body: {
    type: 'object',
    required: ['id'],
    properties: {
      id: { type: 'string', description: 'The new group\'s id' },
      url: { type: 'string', description: 'Its primary node\'s data URL (required with the file registry)' },
      weight: { type: 'number', exclusiveMinimum: 0, default: 1, description: 'Its share of the ring' },
      replicas: { type: 'array', items: { type: 'string' }, description: 'Its replica nodes\' data URLs' }
    }
  },
  response: {
    202: REBALANCE_ANSWER('The rebalance has started'),
    ...errorResponses([...JSON_BODY_ERRORS, 'group_exists', 'rebalance_running', 'conflict', 'unavailable'])
  }
}

export const REMOVE_GROUP_SCHEMA: RouteSchema = {
  operationId: 'removeGroup',
  summary: 'Drain a group: move its keys to the others, then drop it',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  params: GROUP_ID,
  response: {
    202: REBALANCE_ANSWER('The rebalance has started'),
    ...errorResponses([...CHANGE_ERRORS, 'no_such_group', 'last_group', 'rebalance_running', 'conflict'])
  }
}

export const REBALANCE_SCHEMA: RouteSchema = {
  operationId: 'rebalance',
  summary: 'The current or last rebalance',
  description: 'Phase, rows scanned, copied and purged, rows per second, ETA and percent; `null` when none ran since the router started.',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  response: { 200: REBALANCE_ANSWER('The rebalance\'s progress'), ...errorResponses(ROLE_ERRORS) }
}

export const ADD_REPLICA_SCHEMA: RouteSchema = {
  operationId: 'addReplica',
  summary: 'Add a replica to a group',
  description: 'The node must be running; it joins out of sync and catches up from the primary.',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  params: GROUP_ID,
  headers: JSON_ONLY,
  body: { type: 'object', required: ['url'], properties: { url: { type: 'string', description: 'The replica node\'s data URL' } } },
  response: { 201: GROUP_ANSWER('The replica was added'), ...errorResponses([...JSON_BODY_ERRORS, 'no_such_group', 'conflict']) }
}

export const REMOVE_REPLICA_SCHEMA: RouteSchema = {
  operationId: 'removeReplica',
  summary: 'Remove a replica from a group',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  params: GROUP_ID,
  querystring: { type: 'object', required: ['url'], properties: { url: { type: 'string', description: 'The replica node\'s data URL' } } },
  response: { 200: GROUP_ANSWER('The replica was removed'), ...errorResponses([...CHANGE_ERRORS, 'no_such_group', 'conflict']) }
}

export const SWITCHOVER_SCHEMA: RouteSchema = {
  operationId: 'switchover',
  summary: 'Hand a group\'s primary role to an in-sync replica',
  description: 'Planned: the primary is fenced, the replica catches up to its final position and is promoted under a new term; ' +
    'clients see latency, not errors. Without a body the coordinator picks the replica. 503 when the replica did not catch ' +
    'up in time (the primary keeps its role).',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  params: GROUP_ID,
  body: { type: 'object', properties: { to: { type: 'string', description: 'The replica to promote (its data URL)' } }, additionalProperties: false },
  'x-shardkv-body-optional': true,
  response: {
    200: {
      description: 'The switchover is done',
      type: 'object',
      required: ['group', 'from', 'to', 'term', 'epoch', 'position', 'tookMs'],
      properties: {
        group: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        term: { type: 'integer', description: 'The group\'s new term' },
        epoch: { type: 'integer' },
        position: { type: 'integer', description: 'The old primary\'s final position' },
        tookMs: { type: 'number' }
      }
    },
    ...errorResponses([...JSON_BODY_ERRORS, 'no_such_group', 'conflict', 'rebalance_running'])
  }
}

/**
 * Every control-plane route a router relays to the coordinator, with the schema it is
 * described by: the router documents them in its own description, the coordinator
 * serves them (coordinator/admin-api.ts, replication-routes.ts, switchover.ts, check.ts).
 */
export const RELAYED_ROUTES: ReadonlyArray<{ method: 'GET' | 'POST' | 'DELETE', url: string, schema: RouteSchema }> = [
  { method: 'GET', url: CLUSTER_PATH, schema: CLUSTER_SCHEMA },
  { method: 'POST', url: ADMIN.groups, schema: ADD_GROUP_SCHEMA },
  { method: 'DELETE', url: `${ADMIN.groups}/:id`, schema: REMOVE_GROUP_SCHEMA },
  { method: 'GET', url: ADMIN.rebalance, schema: REBALANCE_SCHEMA },
  { method: 'POST', url: `${ADMIN.groups}/:id/replicas`, schema: ADD_REPLICA_SCHEMA },
  { method: 'DELETE', url: `${ADMIN.groups}/:id/replicas`, schema: REMOVE_REPLICA_SCHEMA },
  { method: 'POST', url: `${ADMIN.groups}/:id/switchover`, schema: SWITCHOVER_SCHEMA },
  { method: 'POST', url: ADMIN_DIGEST_PATH, schema: CHECK_DIGEST_SCHEMA }
]
