import type { ErrorCode } from '../errors'
import { MAX_CONTENT_TYPE_LENGTH } from '../content-type'
import { MAX_KEY_BYTES } from '../key'
import { HEADER } from '../wire'
import { MAX_TTL_SECONDS } from '../ttl'
import { errorResponses, errorSchema, jsonContent, requestIdHeader, RETRIES_HEADER, ROLE_ERRORS, TOKEN, type JsonSchema, type RouteSchema } from './common'

/**
 * The data API: `/kv/{key}`, GET/HEAD/PUT/DELETE. GET, HEAD and bodiless DELETEs are
 * served by router/kv-fast-path.ts ahead of fastify; the fastify route (kv-routes.ts)
 * carries these schemas for every method, so the description covers both paths.
 */

export type KvMethodName = 'GET' | 'HEAD' | 'PUT' | 'DELETE'

const KEY_PARAM: JsonSchema = {
  type: 'object',
  required: ['key'],
  properties: {
    key: {
      type: 'string',
      minLength: 1,
      description: `One percent-encoded path segment: 1-${MAX_KEY_BYTES} bytes of UTF-8 after decoding (encode \`/\` as \`%2F\`).`
    }
  }
}

const ETAG_LIST = 'an entity tag list: `*` or `"<etag>"[, "<etag>"...]` (malformed: 400 `invalid_header`)'

const ANSWER_HEADERS = {
  etag: { type: 'string', description: 'The value\'s version, a strong entity tag ("<version>"); the same on every node, through replication, migration and failover' },
  [HEADER.node]: { type: 'string', description: 'The shard node that served the request' },
  'x-content-type-options': { type: 'string', enum: ['nosniff'] },
  ...RETRIES_HEADER
} as const

/** What every data request may be refused or fail with besides its own outcomes. */
const DATA_ERRORS: readonly ErrorCode[] = [
  'invalid_key', 'invalid_header', ...ROLE_ERRORS, 'request_timeout', 'headers_too_large',
  'upstream_error', 'unavailable', 'upstream_timeout', 'internal'
]
const WRITE_ERRORS: readonly ErrorCode[] = [...DATA_ERRORS, 'precondition_failed', 'idempotency_key_reused', 'request_id_expired']

const PRECONDITION_FAILED: JsonSchema = {
  description: 'Error: `precondition_failed` — the If-Match / If-None-Match condition does not hold; `current` is the key\'s ETag (null: no value).',
  ...jsonContent(errorSchema(['precondition_failed'], { current: { type: ['string', 'null'] } }))
}

const VERSION_BODY: JsonSchema = {
  type: 'object',
  required: ['version'],
  properties: { version: { type: 'string', description: 'The new version (the ETag without its quotes)' } },
  additionalProperties: false
}

const readHeaders: JsonSchema = {
  type: 'object',
  properties: {
    'if-none-match': { type: 'string', description: `304 when the value's ETag is in ${ETAG_LIST} (weak comparison)` }
  }
}

const writeHeaders = (what: string, extra: Record<string, JsonSchema> = {}): JsonSchema => ({
  type: 'object',
  properties: {
    ...extra,
    'if-match': { type: 'string', description: `${what} only if the current ETag is in ${ETAG_LIST}; \`*\`: only if the key has a value` },
    'if-none-match': { type: 'string', description: `${what} only if the current ETag is not in ${ETAG_LIST}; \`*\`: only if the key has no value` },
    [HEADER.requestId]: requestIdHeader('The write\'s request id')
  }
})

const read = (method: 'GET' | 'HEAD'): RouteSchema => ({
  operationId: 'getValue',
  summary: method === 'GET' ? 'Read a value' : 'Read a value\'s headers only',
  description: (method === 'GET'
    ? 'Exactly the stored bytes, with the stored Content-Type and the ETag.'
    : 'What GET answers, without the body (Content-Length is the value\'s size).') +
    ' Reads are never stale: the answer is the latest acknowledged write (or one concurrent with the read).',
  tags: ['data'],
  security: TOKEN,
  'x-shardkv-auth': 'read',
  params: KEY_PARAM,
  headers: readHeaders,
  produces: ['*/*'],
  response: {
    200: {
      description: 'The value',
      headers: {
        'content-type': { type: 'string', description: 'The Content-Type it was stored with (application/octet-stream by default)' },
        [HEADER.ttl]: { type: 'string', description: 'Seconds the value has left, millisecond precision (absent: it does not expire)' },
        ...ANSWER_HEADERS
      },
      content: { '*/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } }
    },
    304: { description: 'Not modified: If-None-Match matched the current ETag', headers: ANSWER_HEADERS, type: 'null' },
    ...errorResponses(['not_found', ...DATA_ERRORS])
  }
})

const put: RouteSchema = {
  operationId: 'putValue',
  summary: 'Write a value',
  description: 'Stores the body as the value, byte for byte, with its Content-Type. Conditional with If-Match / If-None-Match ' +
    '(412 when the condition fails, nothing changed). A body over --max-value-bytes (1 MiB by default) is 413, refused ' +
    'before the upload when the client sends `Expect: 100-continue`. A 5xx means the outcome is unknown; retry with the same request id.',
  tags: ['data'],
  security: TOKEN,
  'x-shardkv-auth': 'write',
  params: KEY_PARAM,
  headers: writeHeaders('Write', {
    'content-type': {
      type: 'string',
      maxLength: MAX_CONTENT_TYPE_LENGTH,
      description: `Stored with the value and sent back on every read: printable ASCII, at most ${MAX_CONTENT_TYPE_LENGTH} characters (default application/octet-stream)`
    },
    [HEADER.ttl]: {
      type: 'string',
      pattern: '^\\d{1,9}(\\.\\d{1,3})?$',
      description: `Seconds the value lives (0.001 to ${MAX_TTL_SECONDS}, at most 3 decimals): from then on it reads as absent everywhere, and a sweeper deletes it. Malformed: 400 \`invalid_ttl\``
    }
  }),
  body: { content: { '*/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream', description: 'The value: any bytes (may be empty)' } } } },
  'x-shardkv-body-optional': true,
  response: {
    200: { description: 'Replaced an existing value', headers: ANSWER_HEADERS, ...VERSION_BODY },
    201: { description: 'Created: the key had no value', headers: ANSWER_HEADERS, ...VERSION_BODY },
    ...errorResponses([...WRITE_ERRORS, 'value_too_large', 'unsupported', 'invalid_request', 'invalid_ttl']),
    412: PRECONDITION_FAILED
  }
}

const del: RouteSchema = {
  operationId: 'deleteValue',
  summary: 'Delete a value',
  description: 'Removes the key\'s value (204 also when it had none). If-Match makes it conditional.',
  tags: ['data'],
  security: TOKEN,
  'x-shardkv-auth': 'write',
  params: KEY_PARAM,
  headers: writeHeaders('Delete'),
  response: {
    204: { description: 'Deleted (or there was no value)', headers: ANSWER_HEADERS, type: 'null' },
    ...errorResponses(WRITE_ERRORS),
    412: PRECONDITION_FAILED
  }
}

export const KV_SCHEMAS: Readonly<Record<KvMethodName, RouteSchema>> = { GET: read('GET'), HEAD: read('HEAD'), PUT: put, DELETE: del }
