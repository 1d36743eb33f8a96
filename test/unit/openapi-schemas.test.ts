import t from 'tap'
import Ajv2020 from 'ajv/dist/2020'
import { parseBatch } from '../../src/protocol/batch'
import * as schemas from '../../src/protocol/schemas'
import { BATCH_SCHEMA, SHARED_SCHEMAS, errorResponses, KV_SCHEMAS, type RouteSchema } from '../../src/protocol/schemas'
import { ERROR_STATUS } from '../../src/protocol/errors'
import { isDocumented, openApiPath } from '../../src/http/openapi'
import { renderDocsPage } from '../../src/http/openapi-page'
import { curlExamples } from '../harness/curl-examples'

/**
 * The route schemas as data (src/protocol/schemas), the pieces of router/openapi.ts that
 * are pure, and the curl reader the integration test uses on the docs.
 */

t.test('the batch schema accepts and refuses what parseBatch does', async (t) => {
  const ajv = new Ajv2020({ strict: false })
  for (const s of SHARED_SCHEMAS) ajv.addSchema(s)
  const validate = ajv.compile(BATCH_SCHEMA.body as object)
  const cases: unknown[] = [
    { ops: [{ op: 'get', key: 'a' }] },
    { ops: [{ op: 'put', key: 'a', value: 'aGk=', contentType: 'text/plain', ifNoneMatch: '*' }] },
    { ops: [{ op: 'delete', key: 'a', ifMatch: '"v1"' }, { op: 'get', key: 'b', ifNoneMatch: '"v1"' }] },
    { ops: [{ op: 'put', key: 'a', value: '' }] },
    {},
    { ops: [] },
    { ops: 'no' },
    { ops: [{ op: 'scan', key: 'a' }] },
    { ops: [{ op: 'get', key: 'a', value: 'aGk=' }] },
    { ops: [{ op: 'get', key: 'a', ifMatch: '*' }] },
    { ops: [{ op: 'put', key: 'a' }] },
    { ops: [{ op: 'delete', key: 'a', value: 'aGk=' }] },
    { ops: [{ op: 'get', key: 1 }] },
    { ops: [{ op: 'get', key: '' }] },
    { ops: [{ op: 'get' }] },
    { ops: ['get a'] },
    { ops: [{ op: 'put', key: 'a', value: 'not base64!' }] },
    { ops: [{ op: 'put', key: 'a', value: 5 }] },
    { ops: [{ op: 'put', key: 'a', value: 'aGk=', contentType: 7 }] }
  ]
  for (const body of cases) {
    let parsed = true
    try { parseBatch(body, { maxOps: 100, maxValueBytes: 1024 }) } catch { parsed = false }
    t.equal(validate(body), parsed, `${JSON.stringify(body)}: ${parsed ? 'accepted' : 'refused'} by both`)
  }
})

t.test('every route schema\'s parts compile as JSON Schema', async (t) => {
  const ajv = new Ajv2020({ strict: false })
  for (const s of SHARED_SCHEMAS) ajv.addSchema(s)
  const routes = Object.entries(schemas).filter(([name]) => name.endsWith('_SCHEMA')) as Array<[string, RouteSchema]>
  routes.push(...Object.entries(KV_SCHEMAS).map(([m, s]): [string, RouteSchema] => [`KV ${m}`, s]))
  t.ok(routes.length >= 15, `${routes.length} route schemas`)
  for (const [name, s] of routes) {
    const parts = [s.params, s.querystring, s.headers, s.body, ...Object.values(s.response)]
    for (const part of parts) if (part !== undefined) t.doesNotThrow(() => ajv.compile({ ...part, $id: undefined }), `${name}: compiles`)
  }
})

t.test('error answers are grouped by status and name their codes', async (t) => {
  const responses = errorResponses(['not_found', 'no_route', 'conflict', 'unauthenticated'])
  t.same(Object.keys(responses), ['401', '404', '409'])
  const notFound = responses['404'] as { description: string, content: Record<string, { schema: { properties: { error: { enum: string[] } } } }> }
  t.same(notFound.content['application/json']?.schema.properties.error.enum, ['not_found', 'no_route'])
  t.match(notFound.description, /`not_found`, `no_route`/)
  t.ok((responses['401'] as { headers?: object }).headers, 'a 401 names WWW-Authenticate')
  for (const [method, schema] of Object.entries(KV_SCHEMAS)) {
    for (const status of Object.keys(schema.response)) {
      const code = Number(status)
      t.ok(code < 400 || Object.values(ERROR_STATUS).includes(code as never), `${method} /kv: ${status} is a catalogue status`)
    }
  }
})

t.test('fastify URLs become OpenAPI paths; internal and dashboard routes are left out', async (t) => {
  t.equal(openApiPath('/kv/*'), '/kv/{key}')
  t.equal(openApiPath('/admin/groups/:id/switchover'), '/admin/groups/{id}/switchover')
  t.equal(openApiPath('/cluster'), '/cluster')
  for (const url of ['/internal/map', '/internal/replication/in-sync', '/ui', '/ui/', '/ui/app.js']) t.notOk(isDocumented(url), url)
  for (const url of ['/kv/*', '/cluster', '/uistuff', '/admin/groups']) t.ok(isDocumented(url), url)
})

t.test('the docs page escapes what the description says and has no script', async (t) => {
  const page = renderDocsPage({
    info: { title: '<b>x</b>', version: '1', description: 'a `code` & <script>alert(1)</script>' },
    tags: [{ name: 'data', description: 'd' }],
    paths: { '/kv/{key}': { get: { tags: ['data'], summary: '"><img src=x onerror=alert(1)>', 'x-shardkv-auth': 'read', responses: { 200: { description: 'ok' } } } } },
    components: { schemas: { X: { description: '</pre><script>' } } }
  })
  t.notMatch(page, /<script|<img|<b>x/i)
  t.match(page, /<code>code<\/code> &#38; &#60;script&#62;/)
  t.match(page, /a token with the read role/)
})

t.test('curl examples are read as the shell would split them', async (t) => {
  const md = [
    'text', '```sh',
    '# a comment',
    'curl -i -X PUT -H \'content-type: text/plain\' --data-binary \'hello\' http://127.0.0.1:8080/kv/greeting',
    'curl -sS -H "Authorization: Bearer $(cat data/admin-token)" http://127.0.0.1:8080/cluster | jq .',
    'curl -s -X POST http://127.0.0.1:8080/batch -H \'content-type: application/json\' -d \'{"ops": [',
    '  {"op": "get", "key": "a"}',
    ']}\'',
    '$ curl --data-binary @logo.png http://127.0.0.1:8080/kv/logo.png',
    'npm start',
    '```', '```js', 'curl http://127.0.0.1:8080/not-shell', '```'
  ].join('\n')
  const ex = curlExamples(md, 'x.md')
  t.equal(ex.length, 4)
  t.match(ex[0], { line: 4, method: 'PUT', url: 'http://127.0.0.1:8080/kv/greeting', headers: [['content-type', 'text/plain']], body: 'hello', unknown: [] })
  t.match(ex[1], { method: 'GET', url: 'http://127.0.0.1:8080/cluster', headers: [['authorization', 'Bearer $(cat data/admin-token)']], unknown: [] })
  t.match(ex[2], { line: 6, method: 'POST', url: 'http://127.0.0.1:8080/batch', unknown: [] })
  t.same(JSON.parse(ex[2]?.body ?? ''), { ops: [{ op: 'get', key: 'a' }] })
  t.match(ex[3], { method: 'POST', bodyFromFile: true, body: undefined })
})
