import { errorResponses, JSON_MEDIA_TYPE, ROLE_ERRORS, TOKEN, type JsonSchema, type RouteSchema } from './common'
import { DIGEST_MAX_ROWS as MAX_ROWS, DIGEST_PAGE_ROWS as PAGE_ROWS } from '../digest'

/**
 * `POST /admin/check/digest` (router/check.ts; `shardkv check`): one page of a group's
 * consistency check. The shapes are src/protocol/digest.ts's (WireGroupDigestRequest,
 * WireGroupDigest, WireDigestPage).
 */

const DIGEST_PAGE: JsonSchema = {
  type: 'object',
  required: ['epoch', 'rows', 'tombstones', 'foreign', 'foreignSample', 'digest', 'last', 'done', 'position'],
  properties: {
    epoch: { type: 'integer', description: 'The epoch of the map the node judged foreign rows by' },
    rows: { type: 'integer' },
    tombstones: { type: 'integer' },
    foreign: { type: 'integer', description: 'Rows whose key the installed map gives to another group' },
    foreignSample: { type: 'array', items: { type: 'string' } },
    digest: { type: 'string', description: 'Hex sha256 over the page\'s (key, version, tombstone) rows in key order' },
    last: { type: 'string', description: 'The page\'s last key (\'\' for an empty page)' },
    done: { type: 'boolean' },
    position: { type: 'integer', description: 'The node\'s replication position when the page was read' }
  }
}

export const CHECK_DIGEST_SCHEMA: RouteSchema = {
  operationId: 'checkDigest',
  summary: 'One page of a group\'s consistency check',
  description: 'The primary\'s next page of rows after `after`, and each replica\'s digest of exactly that key range; ' +
    'equal data gives equal digests. Comparing them is the caller\'s business (`shardkv check`).',
  tags: ['admin'],
  security: TOKEN,
  'x-shardkv-auth': 'admin',
  headers: { type: 'object', required: ['content-type'], properties: { 'content-type': JSON_MEDIA_TYPE } },
  body: {
    type: 'object',
    required: ['group', 'after'],
    properties: {
      group: { type: 'string' },
      after: { type: 'string', description: 'A key, or \'\' for the start' },
      limit: { type: 'integer', minimum: 1, maximum: MAX_ROWS, default: PAGE_ROWS }
    }
  },
  response: {
    200: {
      description: 'The page of every node of the group',
      type: 'object',
      required: ['group', 'epoch', 'after', 'until', 'done', 'nodes'],
      properties: {
        group: { type: 'string' },
        epoch: { type: 'integer' },
        after: { type: 'string' },
        until: { type: ['string', 'null'], description: 'The range\'s end: the primary\'s last key, or null to the end of the table' },
        done: { type: 'boolean' },
        nodes: {
          type: 'array',
          items: {
            type: 'object',
            required: ['url', 'role'],
            properties: { url: { type: 'string' }, role: { type: 'string', enum: ['primary', 'replica'] }, page: DIGEST_PAGE, error: { type: 'string', description: 'Why the node did not answer' } }
          }
        }
      }
    },
    ...errorResponses([...ROLE_ERRORS, 'invalid_request', 'unsupported', 'no_such_group', 'unavailable', 'internal'])
  }
}
