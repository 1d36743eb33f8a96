import t from 'tap'
import { METHODS } from 'node:http'
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startCluster, type TestCluster } from '../harness/cluster'
import { recorderPath, routeLogOf } from '../harness/route-recorder'
import { matchOperation, schemaValidator, structuralProblems, type OpenApiDoc, type Operation } from '../harness/openapi'
import { curlExamples, ROUTER_EXAMPLE_URL } from '../harness/curl-examples'
import type { HttpResponse } from '../harness/http'
import { isDocumented, openApiPath } from '../../src/http/openapi'
import { kvFastPath } from '../../router/kv-fast-path'
import { ruleOf } from '../../src/auth/client-guard'
import { keyFromUrl } from '../../src/protocol/key'
import { ERROR_STATUS } from '../../src/protocol/errors'
import { hashToken, newToken } from '../../src/auth/tokens'

/**
 * The router's OpenAPI description (router/openapi.ts) against a real router: every
 * route it registers (recorded in the process by test/harness/route-recorder.ts) and
 * every method its GET fast path takes is described; the document is structurally
 * OpenAPI 3 and every $ref resolves; the auth each operation states is the guard's; the
 * answers the router really gives have documented statuses and match their schemas;
 * and every curl example of README.md and docs/*.md is a described request whose JSON
 * body fits the request schema.
 */

const ROOT = resolve(__dirname, '..', '..')

interface RecordedRoute { method: string | string[], url: string }

async function fetchSpec (c: TestCluster): Promise<OpenApiDoc> {
  const res = await c.http.request('GET', `${c.routerUrl}/openapi.json`)
  if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}: ${res.text()}`)
  return res.json<OpenApiDoc>()
}

/** The methods the GET fast path answers itself, found by offering it a request of every method Node knows. */
function fastPathMethods (): string[] {
  const answer = { status: 204, body: Buffer.alloc(0), retries: 0 }
  const listener = kvFastPath({
    forwarder: { forward: async () => answer } as never,
    maxValueBytes: 1024,
    metrics: { observeRequest: () => {} } as never,
    log: { error: () => {} } as never,
    isDraining: () => false
  })
  const res = { headersSent: false, writeHead: () => res, end: () => {}, destroy: () => {} }
  return METHODS.filter((method) => listener({ url: '/kv/probe', method, headers: {}, socket: {} } as never, res as never))
}

/** The documented response of an answer, and its JSON body checked against the response schema. */
function checkAnswer (t: tap.Test, spec: OpenApiDoc, validator: ReturnType<typeof schemaValidator>, method: string, path: string, res: HttpResponse): void {
  const what = `${method} ${path} → ${res.status}`
  const op = matchOperation(spec, method, path.split('?')[0] as string)?.op
  if (op === undefined) { t.fail(`${what}: no operation`); return }
  const response = op.responses[String(res.status)]
  if (response === undefined) { t.fail(`${what}: status not documented (${res.text().slice(0, 120)})`); return }
  const schema = response.content?.['application/json']?.schema
  if (schema === undefined || method === 'HEAD') { t.pass(`${what}: documented`); return }
  const validate = validator(schema)
  const ok = validate(res.json())
  t.ok(ok, `${what}: body matches its schema${ok ? '' : ` — ${JSON.stringify(validate.errors)} in ${res.text().slice(0, 300)}`}`)
}

t.test('the OpenAPI description covers the real router and stays true', async (t) => {
  const logDir = mkdtempSync(join(tmpdir(), 'shardkv-openapi-routes-'))
  t.teardown(() => rmSync(logDir, { recursive: true, force: true }))
  const prefix = join(logDir, 'routes')
  const c = await startCluster(t, {
    name: 'openapi',
    groups: 1,
    workers: 1,
    env: { SHARDKV_ROUTE_LOG: prefix, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${recorderPath()}`.trim() }
  })
  const spec = await fetchSpec(c)
  const validator = schemaValidator(spec)

  t.test('is structurally OpenAPI 3, every $ref resolves, every schema compiles', async (t) => {
    t.same(structuralProblems(spec), [])
    for (const [name, schema] of Object.entries(spec.components?.schemas ?? {})) {
      t.doesNotThrow(() => validator(schema), `components.schemas.${name} compiles`)
    }
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const schemas = [
          ...(op.parameters ?? []).map((p) => p.schema),
          ...Object.values(op.requestBody?.content ?? {}).map((m) => m.schema),
          ...Object.values(op.responses).flatMap((r) => Object.values(r.content ?? {}).map((m) => m.schema))
        ].filter((s) => s !== undefined)
        for (const s of schemas) t.doesNotThrow(() => validator(s), `${method.toUpperCase()} ${path}: a schema compiles`)
      }
    }
    t.ok(spec.components?.securitySchemes?.bearerAuth, 'the bearer token scheme')
    t.ok(spec.components?.schemas?.ErrorBody, 'the error body')
  })

  t.test('every route the router registers is described (but /internal and /ui)', async (t) => {
    const file = routeLogOf(prefix, c.router.pid)
    t.ok(existsSync(file), `the recorder wrote ${file} (${readdirSync(logDir).join(', ')})`)
    const routes = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RecordedRoute)
    let described = 0
    for (const route of routes) {
      if (!isDocumented(route.url)) continue
      for (const method of [route.method].flat()) {
        const op: Operation | undefined = spec.paths[openApiPath(route.url)]?.[method.toLowerCase()]
        t.ok(op !== undefined && typeof op.summary === 'string', `${method} ${route.url} is described with a summary`)
        described++
      }
    }
    t.ok(described >= 20, `${described} routes checked`)
    t.notOk(routes.some((r) => r.url.startsWith('/internal/')), 'the router serves no internal route (peers talk to the coordinator and the nodes)')
    for (const path of Object.keys(spec.paths)) t.notOk(path.startsWith('/internal/') || path.startsWith('/ui'), `${path} is public`)
  })

  t.test('every method the GET fast path serves is described', async (t) => {
    const taken = fastPathMethods()
    t.same(taken.sort(), ['DELETE', 'GET', 'HEAD'], 'the fast path takes GET, HEAD and bodiless DELETE')
    for (const method of taken) t.ok(spec.paths['/kv/{key}']?.[method.toLowerCase()], `${method} /kv/{key}`)
  })

  t.test('the auth each operation states is the client guard\'s', async (t) => {
    for (const [path, item] of Object.entries(spec.paths)) {
      const rule = ruleOf(path.replace(/\{[^}]+\}/g, 'x'))
      for (const [method, op] of Object.entries(item)) {
        const stated = op['x-shardkv-auth']
        const ok = rule === 'authenticate' ? ['authenticate', 'read', 'write'].includes(stated as string) : stated === rule
        t.ok(ok, `${method.toUpperCase()} ${path}: states ${String(stated)}, the guard's rule is ${rule}`)
        t.equal(Array.isArray(op.security) && op.security.length === 0, rule === 'open', `${method.toUpperCase()} ${path}: security matches`)
      }
    }
  })

  t.test('real answers have documented statuses and match their schemas', async (t) => {
    const { http, routerUrl: u } = c
    const json = { 'content-type': 'application/json' }
    const calls: Array<[string, string, { headers?: Record<string, string>, body?: string }?]> = [
      ['GET', '/healthz'], ['GET', '/cluster'], ['GET', '/admin/rebalance'], ['GET', '/metrics'],
      ['PUT', '/kv/openapi-a', { body: 'one', headers: { 'content-type': 'text/plain' } }],
      ['PUT', '/kv/openapi-a', { body: 'two' }],
      ['GET', '/kv/openapi-a'], ['HEAD', '/kv/openapi-a'], ['GET', '/kv/openapi-missing'],
      ['PUT', '/kv/openapi-a', { body: 'x', headers: { 'if-match': '"not-the-version"' } }],
      ['PUT', '/kv/openapi-a', { body: 'x', headers: { 'if-match': 'unquoted' } }],
      ['PUT', '/kv/openapi-a', { body: 'x', headers: { 'x-shardkv-request-id': 'nope' } }],
      ['DELETE', '/kv/openapi-a'],
      ['POST', '/batch', { headers: json, body: '{"ops":[{"op":"put","key":"b","value":"aGk="},{"op":"get","key":"b"},{"op":"delete","key":"c","ifMatch":"\\"x\\""}]}' }],
      ['POST', '/batch', { headers: json, body: '{"ops":[]}' }],
      ['POST', '/batch', { body: '{"ops":[]}' }],
      ['GET', '/batch'],
      ['POST', '/admin/groups', { body: '{}' }],
      ['POST', '/admin/groups', { headers: json, body: '{"url":"http://127.0.0.1:1"}' }],
      ['DELETE', '/admin/groups/no-such-group'],
      ['POST', '/admin/groups/no-such-group/switchover'],
      ['DELETE', '/admin/groups/g1/replicas'],
      ['GET', '/openapi.json'], ['GET', '/docs']
    ]
    for (const [method, path, opts] of calls) {
      checkAnswer(t, spec, validator, method, path, await http.request(method, `${u}${path}`, opts ?? {}))
    }
    const page = await http.request('GET', `${u}/docs`)
    t.match(page.header('content-type'), /^text\/html/, '/docs is HTML')
    t.match(page.header('content-security-policy'), /default-src 'none'/, '/docs allows no script')
    t.notMatch(page.text(), /<script/i, '/docs has no script')
    for (const path of Object.keys(spec.paths)) t.ok(page.text().includes(`<code>${path}</code>`), `/docs shows ${path}`)
  })

  t.test('docs/api.md has a section for every operation and names every error code', async (t) => {
    const doc = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8')
    const headings = doc.split('\n').filter((l) => l.startsWith('### ')).map((l) => l.slice(4))
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        // Auto-HEAD of a GET route and the refused /batch methods are stated once, not per route.
        if ((method === 'head' && path !== '/kv/{key}') || op.operationId === undefined) continue
        const heading = `${method.toUpperCase()} ${path}`
        t.ok(headings.some((h) => h === heading || h.startsWith(`${heading}?`)), `### ${heading}`)
      }
    }
    for (const code of Object.keys(ERROR_STATUS)) t.ok(doc.includes(`\`${code}\``), `error code ${code}`)
  })

  t.test('every curl example of README.md and docs/*.md is a described request', async (t) => {
    const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
    let checked = 0
    for (const file of files) {
      for (const ex of curlExamples(readFileSync(join(ROOT, file), 'utf8'), file)) {
        const where = `${file}:${ex.line} ${ex.method} ${ex.url}`
        t.same(ex.unknown, [], `${where}: only arguments the contract knows`)
        const m = ROUTER_EXAMPLE_URL.exec(ex.url)
        if (m === null) { t.comment(`${where}: not the router's address; skipped`); continue }
        checked++
        const path = m[1] as string
        const match = matchOperation(spec, ex.method, path.split('?')[0] as string)
        if (match?.op === undefined) { t.fail(`${where}: no such operation`); continue }
        if (path.startsWith('/kv/')) t.doesNotThrow(() => keyFromUrl(path), `${where}: a valid key`)
        checkExample(t, validator, match.op, ex, where)
      }
    }
    t.ok(checked > 0, `${checked} examples checked`)
  })
})

function checkExample (t: tap.Test, validator: ReturnType<typeof schemaValidator>, op: Operation, ex: ReturnType<typeof curlExamples>[number], where: string): void {
  const query = new URLSearchParams(ex.url.split('?')[1] ?? '')
  for (const p of op.parameters ?? []) {
    if (p.required !== true) continue
    if (p.in === 'header') t.ok(ex.headers.some(([name]) => name === p.name), `${where}: sends the required header ${p.name}`)
    if (p.in === 'query') t.ok(query.has(p.name), `${where}: sends the required query parameter ${p.name}`)
  }
  for (const [name, value] of ex.headers) {
    const param = op.parameters?.find((p) => p.in === 'header' && p.name === name)
    if (param?.schema === undefined || value.includes('$')) continue
    const validate = validator(param.schema)
    t.ok(validate(value), `${where}: header ${name} fits its schema ${JSON.stringify(validate.errors ?? '')}`)
  }
  const content = op.requestBody?.content
  if (ex.body === undefined && !ex.bodyFromFile) {
    t.notOk(op.requestBody?.required === true, `${where}: the body it needs is there`)
    return
  }
  t.ok(content !== undefined, `${where}: the operation takes a body`)
  const schema = content?.['application/json']?.schema
  if (schema === undefined || ex.body === undefined) return
  let body: unknown
  try { body = JSON.parse(ex.body) } catch { t.fail(`${where}: the body is not JSON: ${ex.body.slice(0, 80)}`); return }
  const validate = validator(schema)
  t.ok(validate(body), `${where}: the body fits the request schema ${JSON.stringify(validate.errors ?? '')}`)
}

t.test('with client tokens, the description is open and the refusals are the documented ones', async (t) => {
  const admin = newToken()
  const reader = newToken()
  const c = await startCluster(t, {
    name: 'openapi-auth',
    groups: 1,
    workers: 1,
    prepare: (tmp) => {
      const tokens = [{ name: 'admin', sha256: hashToken(admin), roles: ['admin'] }, { name: 'reader', sha256: hashToken(reader), roles: ['read'] }]
      writeFileSync(join(tmp, 'tokens.json'), JSON.stringify({ tokens }))
      return { routerArgs: ['--tokens-file', join(tmp, 'tokens.json')] }
    }
  })
  const u = c.routerUrl
  const res = await c.http.request('GET', `${u}/openapi.json`)
  t.equal(res.status, 200, '/openapi.json needs no token')
  const spec = res.json<OpenApiDoc>()
  const validator = schemaValidator(spec)
  t.equal((await c.http.request('GET', `${u}/docs`)).status, 200, '/docs needs no token')
  const bearer = (token: string): { headers: Record<string, string> } => ({ headers: { authorization: `Bearer ${token}` } })
  const calls: Array<[string, string, { headers?: Record<string, string>, body?: string }, number]> = [
    ['GET', '/cluster', {}, 401],
    ['GET', '/kv/a', { headers: { authorization: 'Bearer skv_nope' } }, 401],
    ['GET', '/metrics', bearer(reader), 403],
    ['PUT', '/kv/a', { ...bearer(reader), body: 'x' }, 403],
    ['POST', '/batch', { headers: { ...bearer(reader).headers, 'content-type': 'application/json' }, body: '{"ops":[{"op":"delete","key":"a"}]}' }, 403],
    ['GET', '/cluster', bearer(reader), 200],
    ['GET', '/admin/rebalance', bearer(admin), 200]
  ]
  for (const [method, path, opts, status] of calls) {
    const answer = await c.http.request(method, `${u}${path}`, opts)
    t.equal(answer.status, status, `${method} ${path}: ${status}`)
    checkAnswer(t, spec, validator, method, path, answer)
  }
})
