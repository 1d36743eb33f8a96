import { errorResponses, ROLE_ERRORS, TOKEN, type RouteSchema } from './common'

/** `GET /watch` (router/watch-routes.ts): change streams as Server-Sent Events (src/protocol/watch.ts). */
export const WATCH_SCHEMA: RouteSchema = {
  operationId: 'watch',
  summary: 'Stream the changes under a key prefix (Server-Sent Events)',
  description: 'One `put` or `delete` event per acknowledged-durable change under `prefix` (data: key, etag, contentType, group, ' +
    'and reason `expired` or `moved` for changes no client made), per key in commit order; every event\'s `id` is an opaque cursor. ' +
    'Reconnecting with `Last-Event-ID` or `since` resumes exactly after it (at-least-once). `progress` events come periodically. ' +
    'An `error` event ends the stream: `cursor_compacted` (with `restart`) or `stream_overflow` (with `resume`).',
  tags: ['data'],
  security: TOKEN,
  'x-shardkv-auth': 'read',
  querystring: {
    type: 'object',
    properties: {
      prefix: { type: 'string', description: 'Only keys that start with it (default: every key the token may read)' },
      since: { type: 'string', description: 'A cursor an earlier stream sent (an event\'s id); default: from now' },
      values: { type: 'string', description: '1: put events carry the value (`value` with `encoding` utf8 or base64, or `valueOmitted: "superseded"` when a newer change replaced it before it was read)' }
    }
  },
  headers: {
    type: 'object',
    properties: { 'last-event-id': { type: 'string', description: 'The same as `since` (what EventSource sends on reconnect); `since` wins' } }
  },
  produces: ['text/event-stream'],
  response: {
    200: { description: 'The event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
    ...errorResponses(['invalid_request', ...ROLE_ERRORS, 'too_many_streams', 'internal'])
  }
}
