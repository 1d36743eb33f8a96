import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startCluster, sandbox, startShardIn, type TestCluster } from '../harness/cluster'
import { createClient } from '../../src/client'
import { hashToken, newToken, type Role } from '../../src/auth/tokens'
import { newRequestId } from '../../src/protocol/request-id'
import { HEADER } from '../../src/protocol/wire'
import { RoutingTable } from '../../src/membership/routing-table'
import { validateMap } from '../../src/membership/map'

/**
 * Client authentication and authorization against real processes: roles and key
 * prefixes on the router (the GET fast path and the fastify routes, batches, admin)
 * and on shard data ports (direct clients), request ids bound to the principal,
 * SIGHUP reloads, rate limits and HTTPS client listeners.
 */

interface TokenSpec { name: string, roles: Role[], prefix?: string }

function writeTokens (path: string, specs: Array<TokenSpec & { token: string }>): void {
  writeFileSync(path, JSON.stringify({ tokens: specs.map((s) => ({ name: s.name, sha256: hashToken(s.token), roles: s.roles, ...(s.prefix === undefined ? {} : { prefix: s.prefix }) })) }))
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** Polls `check` until it holds (a reload is asynchronous to the signal), or fails after a generous budget. */
async function eventually (what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const T = {
  admin: newToken(),
  app1: newToken(),
  app1b: newToken(),
  reader: newToken(),
  late: newToken()
}
const SPECS: Array<TokenSpec & { token: string }> = [
  { name: 'admin', roles: ['admin', 'read', 'write'], token: T.admin },
  { name: 'app1', roles: ['read', 'write'], prefix: 'app1/', token: T.app1 },
  { name: 'app1b', roles: ['read', 'write'], prefix: 'app1/', token: T.app1b },
  { name: 'reader', roles: ['read'], token: T.reader }
]

function authCluster (t: tap.Test, extraRouterArgs: string[] = []): Promise<TestCluster> {
  return startCluster(t, {
    name: 'client-auth',
    groups: 2,
    workers: 1,
    prepare: (tmp) => {
      writeTokens(join(tmp, 'tokens.json'), SPECS)
      writeFileSync(join(tmp, 'secret'), newToken())
      const files = ['--tokens-file', join(tmp, 'tokens.json'), '--cluster-secret-file', join(tmp, 'secret')]
      return { shardArgs: files, routerArgs: [...files, ...extraRouterArgs] }
    }
  })
}

t.test('roles, prefixes, principals and reloads', async (t) => {
  const c = await authCluster(t)
  const r = c.routerUrl
  const h = c.http

  await t.test('the router: 401 without or with an unknown token, on both paths', async (t) => {
    for (const [what, headers] of [['no token', {}], ['unknown token', bearer(newToken())], ['not bearer', { authorization: `Basic ${T.admin}` }]] as const) {
      const get = await h.get(r, 'app1/a', headers)
      t.equal(get.status, 401, `GET (fast path), ${what}`)
      t.equal(get.json().error, 'unauthenticated')
      t.match(get.header('www-authenticate'), /^Bearer/, 'the challenge')
      const put = await h.put(r, 'app1/a', 'x', headers)
      t.equal(put.status, 401, `PUT (fastify), ${what}`)
      t.match(put.header('www-authenticate'), /^Bearer/)
      t.equal((await h.request('POST', `${r}/batch`, { body: '{"ops":[]}', headers: { 'content-type': 'application/json', ...headers } })).status, 401, `batch, ${what}`)
      t.equal((await h.request('GET', `${r}/cluster`, { headers })).status, 401, `/cluster, ${what}`)
    }
    t.equal((await h.request('GET', `${r}/healthz`)).status, 200, '/healthz stays open')
  })

  await t.test('the router: roles and prefixes', async (t) => {
    t.equal((await h.put(r, 'app1/a', 'one', bearer(T.app1))).status, 201, 'app1 writes under its prefix')
    const got = await h.get(r, 'app1/a', bearer(T.app1))
    t.equal(got.status, 200, 'and reads it (fast path)')
    t.equal(got.text(), 'one')
    t.equal((await h.request('HEAD', `${r}/kv/app1%2Fa`, { headers: bearer(T.app1) })).status, 200, 'HEAD')
    for (const [what, res] of [
      ['app1 GET outside its prefix', await h.get(r, 'app2/a', bearer(T.app1))],
      ['app1 PUT outside its prefix', await h.put(r, 'app2/a', 'x', bearer(T.app1))],
      ['app1 DELETE outside its prefix (fast path)', await h.del(r, 'other', bearer(T.app1))],
      ['reader PUT', await h.put(r, 'app1/a', 'x', bearer(T.reader))],
      ['reader DELETE (fast path)', await h.del(r, 'app1/a', bearer(T.reader))],
      ['reader /metrics', await h.request('GET', `${r}/metrics`, { headers: bearer(T.reader) })],
      ['app1 /admin/rebalance', await h.request('GET', `${r}/admin/rebalance`, { headers: bearer(T.app1) })],
      ['app1 POST /admin/groups', await h.request('POST', `${r}/admin/groups`, { body: '{}', headers: { 'content-type': 'application/json', ...bearer(T.app1) } })]
    ] as const) {
      t.equal(res.status, 403, what)
      t.equal(res.json().error, 'forbidden', `${what}: forbidden`)
    }
    t.equal((await h.get(r, 'app1/a', bearer(T.reader))).text(), 'one', 'reader reads any key')
    t.equal((await h.request('GET', `${r}/cluster`, { headers: bearer(T.reader) })).status, 200, 'read opens /cluster')
    t.equal((await h.request('GET', `${r}/metrics`, { headers: bearer(T.admin) })).status, 200, 'admin opens /metrics')
    t.not((await h.request('GET', `${r}/admin/rebalance`, { headers: bearer(T.admin) })).status, 403, 'admin opens /admin')
  })

  await t.test('the router: a batch is refused whole when one op is outside', async (t) => {
    const batch = (token: string, ops: unknown[]): Promise<{ status: number, json: <X>() => X }> =>
      h.request('POST', `${r}/batch`, { body: JSON.stringify({ ops }), headers: { 'content-type': 'application/json', ...bearer(token) } })
    const mixed = await batch(T.app1, [{ op: 'put', key: 'app1/b1', value: Buffer.from('v').toString('base64') }, { op: 'put', key: 'nope/b2', value: '' }])
    t.equal(mixed.status, 403, 'one key outside the prefix')
    t.equal((await h.get(r, 'app1/b1', bearer(T.admin))).status, 404, 'nothing of it was applied')
    t.equal((await batch(T.reader, [{ op: 'get', key: 'x' }, { op: 'delete', key: 'x' }])).status, 403, 'reader: a delete in a batch')
    const ok = await batch(T.app1, [{ op: 'put', key: 'app1/b1', value: '' }, { op: 'get', key: 'app1/a' }])
    t.equal(ok.status, 200)
    t.same(ok.json<{ results: Array<{ status: number }> }>().results.map((x) => x.status), [201, 200])
  })

  await t.test('request ids are bound to the principal', async (t) => {
    const id = newRequestId()
    const headers = (token: string): Record<string, string> => ({ ...bearer(token), [HEADER.requestId]: id })
    t.equal((await h.put(r, 'app1/reused', 'first', headers(T.app1))).status, 201, 'app1 writes with an id')
    t.equal((await h.put(r, 'app1/reused', 'first', headers(T.app1))).status, 201, 'its retry is answered as the first')
    const other = await h.put(r, 'app1/reused', 'second', headers(T.app1b))
    t.equal(other.status, 422, 'another principal reusing the id')
    t.equal(other.json().error, 'idempotency_key_reused')
    const same = await h.put(r, 'app1/reused', 'first', headers(T.app1b))
    t.equal(same.status, 422, 'even for the very same operation')
    // Straight to the owner node: the node binds the id to the token's principal alike.
    const table = new RoutingTable(validateMap(await (await h.request('GET', `${r}/cluster`, { headers: bearer(T.admin) })).json()))
    const owner = table.ownerOf('app1/reused') as string
    t.equal((await h.put(owner, 'app1/reused', 'first', headers(T.app1b))).status, 422, 'direct to the node, as app1b')
    t.equal((await h.put(owner, 'app1/reused', 'first', headers(T.app1))).status, 201, 'direct to the node, as app1: the replay')
    // x-shardkv-principal is believed only with the cluster secret.
    t.equal((await h.put(owner, 'app1/reused', 'first', { ...headers(T.app1b), [HEADER.principal]: 'app1' })).status, 422, 'a client cannot claim another principal')
    const secret = readFileSync(join(c.tmp, 'secret'), 'utf8')
    t.equal((await h.put(owner, 'app1/reused', 'first', { [HEADER.peerAuth]: secret, [HEADER.requestId]: id, [HEADER.principal]: 'app1' })).status, 201, 'a peer (router) can: the replay')
    t.equal((await h.put(owner, 'app1/reused', 'first', { [HEADER.peerAuth]: secret, [HEADER.requestId]: id, [HEADER.principal]: 'app1b' })).status, 422, 'and for app1b it is a reuse')
    t.equal((await h.get(r, 'app1/reused', bearer(T.app1))).text(), 'first', 'the first write is intact')
  })

  await t.test('coalesced writes of two principals keep each id bound to its own', async (t) => {
    // Both principals write at once, so the router coalesces writes of one turn; a batch
    // carries one principal, so each id must be recorded under its own writer.
    const writers = [T.app1, T.app1b]
    const ids = Array.from({ length: 32 }, () => newRequestId())
    const tokenOf = (i: number): string => writers[i % 2] as string
    const first = await Promise.all(ids.map(async (id, i) => await h.put(r, `app1/lane${i}`, `v${i}`, { ...bearer(tokenOf(i)), [HEADER.requestId]: id })))
    t.same(first.map((res) => res.status).filter((s) => s !== 201), [], 'all created')
    const wrong: string[] = []
    for (let i = 0; i < ids.length; i++) {
      const own = await h.put(r, `app1/lane${i}`, `v${i}`, { ...bearer(tokenOf(i)), [HEADER.requestId]: ids[i] as string })
      const other = await h.put(r, `app1/lane${i}`, `v${i}`, { ...bearer(tokenOf(i + 1)), [HEADER.requestId]: ids[i] as string })
      if (own.status !== 201 || own.header('etag') !== first[i]?.header('etag') || other.status !== 422) wrong.push(`lane${i}: own ${own.status}, other ${other.status}`)
    }
    t.same(wrong.slice(0, 3), [], 'each writer\'s retry is its replay; the other principal\'s is a reuse (422)')
  })

  await t.test('shard data ports: a token, or the peer secret', async (t) => {
    const shard = c.primaries[0]!.url
    const bare = await h.get(shard, 'app1/a')
    t.equal(bare.status, 401, 'no token: 401')
    t.match(bare.header('www-authenticate'), /^Bearer/)
    t.equal((await h.request('POST', `${shard}/batch`, { body: '{"ops":[]}', headers: { 'content-type': 'application/json' } })).status, 401, 'batch without a token')
    t.not((await h.get(shard, 'app1/a', bearer(T.app1))).status, 401, 'a token is taken')
    t.equal((await h.get(shard, 'app2/a', bearer(T.app1))).status, 403, 'its prefix holds on the node too')
    const secret = readFileSync(join(c.tmp, 'secret'), 'utf8')
    t.not((await h.get(shard, 'app2/a', { [HEADER.peerAuth]: secret })).status, 401, 'the peer secret is a full-access peer')
    t.equal((await h.get(shard, 'app2/a', { [HEADER.peerAuth]: 'x'.repeat(43) })).status, 401, 'a wrong secret is not')
    t.equal((await h.request('GET', `${shard}/metrics`, { headers: bearer(T.app1) })).status, 403, 'node /metrics needs admin')

    const direct = createClient({ url: r, mode: 'direct', token: T.app1, retryTimeoutMs: 2000 })
    t.teardown(async () => { await direct.close() })
    await direct.put('app1/direct', 'd')
    t.equal((await direct.get('app1/direct')).value.toString(), 'd', 'the direct client with a token works')
    t.ok((direct.stats().requests[c.primaries[0]!.url] ?? 0) + (direct.stats().requests[c.primaries[1]!.url] ?? 0) > 0, 'and went to the nodes')
    const anonymous = createClient({ url: r, mode: 'direct', retryTimeoutMs: 1000 })
    t.teardown(async () => { await anonymous.close() })
    await t.rejects(anonymous.get('app1/direct'), { code: 'unauthenticated', status: 401 }, 'without a token it is refused (401, not an outage)')
  })

  await t.test('SIGHUP reloads the tokens file, router and nodes, without a restart', async (t) => {
    const path = join(c.tmp, 'tokens.json')
    const shard = c.primaries[0]!
    const next = [...SPECS.filter((s) => s.name !== 'reader'), { name: 'late', roles: ['read'] as Role[], token: T.late }]
    writeTokens(path, next)
    const reloaded = c.router.waitForEvent('tokens-reloaded')
    c.router.signal('SIGHUP')
    shard.proc.signal('SIGHUP')
    await reloaded
    t.equal((await h.get(c.routerUrl, 'app1/a', bearer(T.late))).status, 200, 'router: the new token works')
    t.equal((await h.get(c.routerUrl, 'app1/a', bearer(T.reader))).status, 401, 'router: the removed one is refused')
    await eventually('node: the new token', async () => (await h.get(shard.url, 'app1/a', bearer(T.late))).status !== 401)
    await eventually('node: the removed token', async () => (await h.get(shard.url, 'app1/a', bearer(T.reader))).status === 401)
    t.equal(c.router.pid, c.launched[c.launched.length - 1]?.pid, 'the router was not restarted')

    writeFileSync(path, '{"tokens": [ this is not JSON')
    const failed = c.router.waitForEvent('tokens-reload-failed')
    c.router.signal('SIGHUP')
    await failed
    t.equal((await h.get(c.routerUrl, 'app1/a', bearer(T.late))).status, 200, 'a bad file keeps the tokens in force')
  })
})

t.test('rate limits: 429 + Retry-After on the fast path and fastify routes, shared counters', async (t) => {
  const c = await authCluster(t, ['--rate-limit-per-token', '5', '--rate-limit-per-ip', '12', '--rate-limit-window-ms', '120000'])
  const r = c.routerUrl
  const h = c.http
  // Requests from 127.0.0.1 are counted per address (12) and per token (5) in one window.
  for (let i = 0; i < 5; i++) t.not((await h.get(r, 'k', bearer(T.reader))).status, 429, `reader GET ${i + 1}`)
  const limited = await h.get(r, 'k', bearer(T.reader))
  t.equal(limited.status, 429, 'the 6th GET of one token (fast path)')
  t.equal(limited.json().error, 'rate_limited')
  t.ok(Number(limited.header('retry-after')) >= 1, `Retry-After: ${limited.header('retry-after') ?? ''}`)
  const put = await h.put(r, 'k', 'v', bearer(T.reader))
  t.equal(put.status, 429, 'the same token on a fastify route: the same counter')
  t.ok(Number(put.header('retry-after')) >= 1)
  // 7 requests from this address so far; the admin token has its own allowance of 5.
  for (let i = 0; i < 5; i++) t.not((await h.put(r, 'k', 'v', bearer(T.admin))).status, 429, `admin PUT ${i + 1}`)
  const byIp = await h.get(r, 'k', bearer(T.admin))
  t.equal(byIp.status, 429, 'past the per-address limit (fast path)')
  t.equal((await h.put(r, 'k', 'v')).status, 429, 'per address before authentication: no token needed to be limited')
  t.equal((await h.request('GET', `${r}/healthz`)).status, 200, '/healthz is not limited')
})

function selfSigned (dir: string): { cert: string, key: string } {
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  return { cert, key }
}

t.test('HTTPS client listeners: the router and a shard data port', async (t) => {
  let pem = { cert: '', key: '' }
  // The coordinator serves its admin API over HTTPS with the same certificate, and the router
  // relays there: without a peer CA it verifies it with the system's CAs, which this adds to.
  const env: NodeJS.ProcessEnv = {}
  const c = await startCluster(t, {
    name: 'client-tls',
    groups: 1,
    workers: 1,
    env,
    prepare: (tmp) => {
      pem = selfSigned(tmp)
      env.NODE_EXTRA_CA_CERTS = pem.cert
      writeTokens(join(tmp, 'tokens.json'), SPECS)
      return { routerArgs: ['--tls-cert', pem.cert, '--tls-key', pem.key, '--tokens-file', join(tmp, 'tokens.json')] }
    }
  })
  t.match(c.routerUrl, /^https:\/\/127\.0\.0\.1:\d+$/, 'the router announces an https URL')
  const ca = readFileSync(pem.cert)

  for (const mode of ['routed', 'direct'] as const) {
    const kv = createClient({ url: c.routerUrl, mode, token: T.admin, ca, retryTimeoutMs: 2000 })
    t.teardown(async () => { await kv.close() })
    await kv.put(`tls-${mode}`, 'secret value')
    t.equal((await kv.get(`tls-${mode}`)).value.toString(), 'secret value', `${mode}: a round trip over TLS with the client's ca`)
  }
  const untrusting = createClient({ url: c.routerUrl, token: T.admin, retryTimeoutMs: 500 })
  t.teardown(async () => { await untrusting.close() })
  await t.rejects(untrusting.get('tls-routed'), { message: /SELF_SIGNED_CERT/ }, 'without the ca the certificate is refused')

  // A shard node's data port over HTTPS (alone: the router's upstream CA is the peer branch's).
  const box = sandbox(t, 'client-tls-node')
  const node = await startShardIn(box, { group: 'g9', nodeId: 'n9', dataDir: join(box.tmp, 'g9'), port: 0, workers: 1, extraArgs: ['--tls-cert', pem.cert, '--tls-key', pem.key] })
  t.match(node.url, /^https:/, 'the node announces an https URL')
  const agent = new Agent({ connect: { ca } })
  t.teardown(async () => { await agent.close() })
  const res = await request(`${node.url}/healthz`, { dispatcher: agent })
  t.equal(res.statusCode, 200, 'the node answers over TLS')
  await res.body.dump()
})
