import { ERROR_STATUS, type ErrorCode } from '../errors'
import { REQUEST_ID_GRAMMAR, REQUEST_ID_PATTERN } from '../request-id'
import { HEADER } from '../wire'

/**
 * Route schemas as data: what each route of the router's public API takes and answers,
 * declared once and used twice — as the routes' fastify `schema` (router/*-routes.ts,
 * admin-api.ts, switchover.ts) and, through @fastify/swagger, as the OpenAPI description
 * served at /openapi.json (router/openapi.ts).
 *
 * They are documentation, not validation: the routes keep validating in the protocol
 * parsers (key.ts, preconditions.ts, batch.ts, json-body.ts), which answer with the
 * error catalogue's codes (errors.ts). See router/openapi.ts for why, and the tests that
 * keep the two in step (test/unit/openapi*.test.ts, test/integration/openapi*.test.ts).
 *
 * Plain JSON Schema (2020-12, as OpenAPI 3.1 uses it); shared shapes are referenced as
 * `<Name>#` and registered with fastify's addSchema (components.ts).
 */

export type JsonSchema = Record<string, unknown>

/** What a request needs (src/auth/client-guard.ts ruleOf), stated in the description as `x-shardkv-auth`. */
export type AuthRule = 'open' | 'authenticate' | 'read' | 'write' | 'admin'

export interface RouteSchema {
  /** Unique in the description: left out where one schema serves several methods. */
  operationId?: string
  summary: string
  description?: string
  tags: string[]
  /** `[]`: no credential needed; else the bearer token. */
  security: Array<Record<string, string[]>>
  'x-shardkv-auth': AuthRule
  params?: JsonSchema
  querystring?: JsonSchema
  headers?: JsonSchema
  body?: JsonSchema
  /** The request body may be left out (OpenAPI `requestBody.required: false`). */
  'x-shardkv-body-optional'?: boolean
  /** Media types of the body / answers when not JSON. */
  consumes?: string[]
  produces?: string[]
  response: Record<string, JsonSchema>
  hide?: boolean
}

export const BEARER_SCHEME = 'bearerAuth'

/** Security requirements: none, or the bearer token. */
export const OPEN: RouteSchema['security'] = []
export const TOKEN: RouteSchema['security'] = [{ [BEARER_SCHEME]: [] }]

export const SECURITY_SCHEMES = {
  [BEARER_SCHEME]: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'skv_<43 base64url characters>',
    description: 'A client token from the router\'s --tokens-file (docs/security.md). Its roles (read, write, admin) ' +
      'and optional key prefix bound what it may do. Without a tokens file the router does not authenticate clients.'
  }
} as const

/** The error body of every error answer (src/protocol/errors.ts). */
export const ERROR_BODY: JsonSchema = {
  $id: 'ErrorBody',
  type: 'object',
  description: 'Every error answer: a code from the one catalogue (src/protocol/errors.ts) and a human message; some codes add fields (a 412 its `current` ETag, a batch refusal the op `index`).',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', enum: Object.keys(ERROR_STATUS) },
    message: { type: 'string' }
  },
  additionalProperties: true
}

/** Errors any route behind the client guard can answer (a missing or bad token, a rate limit). */
export const GUARD_ERRORS: readonly ErrorCode[] = ['unauthenticated', 'rate_limited']

/** And with a role to check (a token without it). */
export const ROLE_ERRORS: readonly ErrorCode[] = [...GUARD_ERRORS, 'forbidden']

/**
 * Error answers by status, each listing the codes it carries: `{ "404": {description, schema} }`.
 * The schema is the error body with `error` narrowed to those codes.
 */
export function errorResponses (codes: readonly ErrorCode[]): Record<string, JsonSchema> {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of new Set(codes)) {
    const status = ERROR_STATUS[code]
    byStatus.set(status, [...(byStatus.get(status) ?? []), code])
  }
  const out: Record<string, JsonSchema> = {}
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: `Error: ${list.map((c) => `\`${c}\``).join(', ')}`,
      ...(status === 401 ? { headers: { 'www-authenticate': { type: 'string', description: '`Bearer` (no token) or `Bearer error="invalid_token"`' } } } : {}),
      ...(status === 429 ? { headers: { 'retry-after': { type: 'string', description: 'Seconds until the window resets' } } } : {}),
      ...(status === 405 ? { headers: { allow: { type: 'string', description: 'The methods the path takes' } } } : {}),
      ...jsonContent(errorSchema(list))
    }
  }
  return out
}

/** The error body with `error` narrowed to some codes. */
export function errorSchema (codes: readonly ErrorCode[], extra: Record<string, JsonSchema> = {}): JsonSchema {
  return {
    type: 'object',
    required: ['error', 'message', ...Object.keys(extra)],
    properties: { error: { type: 'string', enum: [...codes] }, message: { type: 'string' }, ...extra },
    additionalProperties: true
  }
}

/**
 * A JSON answer's media type stated explicitly: on routes whose success answers are not
 * JSON (a stored value is any type) an error answer still is.
 */
export function jsonContent (schema: JsonSchema): { content: Record<string, { schema: JsonSchema }> } {
  return { content: { 'application/json': { schema } } }
}

/**
 * The Content-Type a JSON endpoint takes (src/http/json-body.ts). Stated as a header as well
 * as by the request body's media type, so the docs' examples are checked for it (OpenAPI
 * tools ignore a Content-Type header parameter; that is harmless).
 */
export const JSON_MEDIA_TYPE: JsonSchema = { type: 'string', pattern: '^application/json\\s*(;|$)', description: 'application/json (anything else is 415 `unsupported`)' }

/** `x-shardkv-request-id`: makes a retried write apply once (src/protocol/request-id.ts). */
export function requestIdHeader (what: string): JsonSchema {
  return {
    type: 'string',
    pattern: REQUEST_ID_PATTERN.source,
    description: `${what}: \`${REQUEST_ID_GRAMMAR}\`. Send the same id on every retry of the same request so it applies once; ` +
      'the router makes one when none is sent. The same id with another operation is 422 `idempotency_key_reused`.'
  }
}

export const REQUEST_ID = HEADER.requestId
export const RETRIES_HEADER = { [HEADER.retries]: { type: 'string', description: 'How many times the router retried upstream (absent: none)' } } as const
