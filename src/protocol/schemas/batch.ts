import { ERROR_STATUS } from '../errors'
import { BATCH_ID_ROOM } from '../request-id'
import { MAX_CONTENT_TYPE_LENGTH } from '../content-type'
import { errorResponses, JSON_MEDIA_TYPE, requestIdHeader, RETRIES_HEADER, ROLE_ERRORS, TOKEN, type JsonSchema, type RouteSchema } from './common'
import { MAX_TTL_SECONDS } from '../ttl'

/**
 * `POST /batch` (src/protocol/batch.ts has the format and its validation, parseBatch;
 * test/unit/openapi-schemas.test.ts checks this schema accepts and refuses alike).
 */

const ETAG_TEXT = 'the same text as the HTTP header: `*` or a list of quoted ETags'

export const BATCH_OP: JsonSchema = {
  $id: 'BatchOp',
  type: 'object',
  required: ['op', 'key'],
  properties: {
    op: { type: 'string', enum: ['get', 'put', 'delete'] },
    key: { type: 'string', minLength: 1, description: 'The key itself (not percent-encoded), 1-1024 bytes of UTF-8' },
    value: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', description: 'put only: the value, base64' },
    contentType: { type: 'string', maxLength: MAX_CONTENT_TYPE_LENGTH, description: 'put only: stored with the value (default application/octet-stream)' },
    ifMatch: { type: 'string', description: `put and delete: ${ETAG_TEXT}` },
    ifNoneMatch: { type: 'string', description: ETAG_TEXT },
    rid: { type: 'string', description: 'The op\'s own request id (the router sets `<batch id>-<index>`; clients need not)' },
    ttl: { type: 'number', exclusiveMinimum: 0, maximum: MAX_TTL_SECONDS, description: 'put only: seconds the value lives (at most 3 decimals; bad: 400 `invalid_ttl`)' }
  },
  allOf: [
    { if: { properties: { op: { enum: ['put'] } } }, then: { required: ['value'] } },
    { if: { properties: { op: { enum: ['get'] } } }, then: { not: { anyOf: [{ required: ['value'] }, { required: ['ifMatch'] }] } } },
    { if: { properties: { op: { enum: ['delete'] } } }, then: { not: { required: ['value'] } } }
  ]
}

export const BATCH_RESULT: JsonSchema = {
  $id: 'BatchResult',
  type: 'object',
  required: ['status'],
  description: 'One op\'s result: what the single request would have answered (status, ETag, value) or its error body.',
  properties: {
    status: { type: 'integer' },
    etag: { type: 'string' },
    contentType: { type: 'string' },
    value: { type: 'string', description: 'a get\'s value, base64' },
    ttl: { type: 'string', description: 'a get\'s remaining time to live in seconds (absent: the value does not expire)' },
    error: { type: 'string', enum: Object.keys(ERROR_STATUS) },
    message: { type: 'string' },
    current: { type: ['string', 'null'], description: 'a 412\'s current ETag' }
  },
  additionalProperties: true
}

export const BATCH_SCHEMA: RouteSchema = {
  operationId: 'batch',
  summary: 'Many gets, puts and deletes in one request',
  description: 'One result per op, in the request\'s order; 200 whenever the batch itself is valid (a failed op does not fail ' +
    'the others). A malformed batch is refused whole before anything applies. Each group\'s share commits in one ' +
    'transaction on its primary; nothing is atomic across groups. At most --max-batch-ops ops (1000) and ' +
    '--max-batch-bytes (16 MiB); gets need the read role, puts and deletes write, every key within the token\'s prefix.',
  tags: ['batch'],
  security: TOKEN,
  'x-shardkv-auth': 'authenticate',
  headers: {
    type: 'object',
    required: ['content-type'],
    properties: {
      'content-type': JSON_MEDIA_TYPE,
      'x-shardkv-request-id': requestIdHeader(`The batch's id (at most ${72 - BATCH_ID_ROOM} characters after the dot); op i is recorded under \`<id>-<i>\``)
    }
  },
  body: {
    type: 'object',
    required: ['ops'],
    properties: { ops: { type: 'array', minItems: 1, items: { $ref: 'BatchOp#' } } }
  },
  response: {
    200: {
      description: 'Every op\'s result',
      headers: RETRIES_HEADER,
      type: 'object',
      required: ['results'],
      properties: { results: { type: 'array', items: { $ref: 'BatchResult#' } } }
    },
    ...errorResponses(['invalid_request', 'invalid_key', 'invalid_header', 'invalid_ttl', 'unsupported', 'batch_too_large', 'value_too_large', ...ROLE_ERRORS, 'internal'])
  }
}

/** The methods /batch refuses (router/batch-routes.ts answers them 405 with `Allow: POST`). */
export const BATCH_REFUSED_SCHEMA: RouteSchema = {
  summary: 'Refused: a batch is a POST',
  tags: ['batch'],
  security: TOKEN,
  'x-shardkv-auth': 'authenticate',
  response: errorResponses(['method_not_allowed', 'unauthenticated'])
}
