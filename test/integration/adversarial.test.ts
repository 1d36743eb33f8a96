import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HttpClient, type HttpResponse } from '../harness/http'
import { LoadGenerator, formatStats } from '../harness/history'
import { sleep, startCluster, type TestCluster } from '../harness/cluster'
import { allReplicasInSync, primaryUrl, replicaUrls } from '../harness/cluster-view'
import { drip, flood } from '../harness/adversary'
import { peerCall } from '../harness/peer-auth'
import { ADMIN, HEADER, INTERNAL, INTERNAL_COORDINATOR, INTERNAL_REPLICATION } from '../../src/protocol/wire'
import { kvPath } from '../../src/protocol/key'
import { hashToken, newToken } from '../../src/auth/tokens'
import { newRequestId } from '../../src/protocol/request-id'

/**
 * The adversarial suite (issue 8): a replicated cluster (2 groups × primary + replica)
 * with a cluster secret, peer listeners and a tokens file, taking a history-checked
 * workload the whole time, while strangers and under-privileged clients try every
 * class of attack that once worked against shardkv with one request. Each probe must be
 * refused (the status it gets is asserted), and none may change anything: the installed
 * epochs and terms, the in-sync sets and the forged key are compared before and after,
 * and at the end every acknowledged write of the workload reads back (history and
 * linearizability check). Probes that need the secret itself (a peer impersonating
 * another) are in peer-auth.test.ts.
 */

const LIMITS = ['--headers-timeout-ms', '1500', '--request-timeout-ms', '3000', '--max-connections', '96']
const b64 = (s: string): string => Buffer.from(s).toString('base64')

interface Tokens { admin: string, app: string, other: string, reader: string }

function writeCredentials (tmp: string, tokens: Tokens): string[] {
  const secretFile = join(tmp, 'cluster-secret')
  writeFileSync(secretFile, randomBytes(32).toString('base64url') + '\n', { mode: 0o600 })
  const entry = (name: string, token: string, roles: string[], prefix?: string): unknown => ({ name, sha256: hashToken(token), roles, ...(prefix !== undefined ? { prefix } : {}) })
  const tokensFile = join(tmp, 'tokens.json')
  writeFileSync(tokensFile, JSON.stringify({
    tokens: [
      entry('admin', tokens.admin, ['admin', 'read', 'write']),
      entry('app', tokens.app, ['read', 'write'], 'adv'),
      entry('other', tokens.other, ['read', 'write']),
      entry('reader', tokens.reader, ['read'])
    ]
  }), { mode: 0o600 })
  return ['--cluster-secret-file', secretFile, '--tokens-file', tokensFile, '--peer-port', '0', ...LIMITS]
}

interface Target { name: string, peer: string, data: string }

/** Each node's data and peer URL, and the router's peer URL (from a node's installed record, fetched as a peer would… which we cannot: so from healthz and the router's log). */
async function targets (c: TestCluster): Promise<Target[]> {
  return await Promise.all(c.nodes.map(async (n) => {
    const h = await c.health(n) as unknown as { peerPort?: number }
    if (typeof h.peerPort !== 'number') throw new Error(`${n.name} reports no peer port`)
    return { name: n.name, data: n.url, peer: `http://127.0.0.1:${h.peerPort}` }
  }))
}

/** What no refused probe may change. */
async function observe (c: TestCluster, admin: HttpClient): Promise<string> {
  const view = await c.view()
  const nodes = await Promise.all(c.nodes.map(async (n) => {
    const h = await c.health(n)
    return `${n.name}: epoch ${h.epoch} term ${String(h.term)} role ${String(h.role)}`
  }))
  const groups = view.groups.map((g) => `${g.id} term ${g.term}: ${g.nodes.map((n) => `${n.url} ${n.role} inSync=${String(n.inSync)}`).join(', ')}`)
  const forged = await Promise.all(['forged', 'adv/forged'].map(async (k) => (await admin.request('GET', c.routerUrl + kvPath(k))).status))
  return JSON.stringify({ epoch: view.epoch, nodes, groups, forged }, null, 1)
}

t.test('strangers and under-privileged clients change nothing while a workload runs', async (t) => {
  const tokens: Tokens = { admin: newToken(), app: newToken(), other: newToken(), reader: newToken() }
  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
  const c = await startCluster(t, {
    name: 'adversarial',
    groups: 2,
    replicas: 1,
    prepare: (tmp) => {
      const args = writeCredentials(tmp, tokens)
      return { shardArgs: args, routerArgs: args }
    },
    clientHeaders: () => bearer(tokens.admin)
  })
  await c.waitForView(allReplicasInSync, 'every replica in sync', 60_000)
  const nodes = await targets(c)
  const view = await c.view()
  const primaries = new Set(view.groups.map((g) => primaryUrl(view, g.id)))
  const replicas = view.groups.flatMap((g) => replicaUrls(view, g.id))
  const routerPeer = await coordinatorPeerUrl(c)
  const before = await observe(c, c.http)

  const appHttp = new HttpClient({ connections: 16, headers: () => bearer(tokens.app) })
  const otherHttp = new HttpClient({ connections: 4, headers: () => bearer(tokens.other) })
  t.teardown(async () => { await Promise.allSettled([appHttp.close(), otherHttp.close()]) })
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 6, keysPerClient: 10, durationMs: 120_000, maxOpsPerClient: 100_000, keyPrefix: 'adv', requestTimeoutMs: 25_000 }, appHttp)
  const running = load.run()
  await waitForOps(load, 100)

  await t.test('internal endpoints: no secret, a wrong secret, a client token', async (t) => {
    for (const n of nodes) {
      const primary = primaries.has(n.data)
      for (const probe of internalProbes(n, routerPeer, primary)) {
        for (const [who, headers] of [['no credential', {}], ['a wrong secret', { [HEADER.peerAuth]: randomBytes(32).toString('base64url') }], ['the admin client token', bearer(tokens.admin)]] as const) {
          const res = await peerCall(probe.method, n.peer + probe.path, { headers, body: probe.body })
          t.equal(res.status, 401, `${n.name} peer port, ${probe.method} ${probe.path} with ${who}: 401 (${res.text.slice(0, 80)})`)
        }
        const onData = await peerCall(probe.method, n.data + probe.path, { body: probe.body })
        t.equal(onData.status, 404, `${n.name} data port, ${probe.method} ${probe.path}: not served there (404)`)
      }
    }
    const inSync = { group: 'g1', url: replicas[0], inSync: false, term: 1, sender: primaryUrl(view, 'g1') }
    for (const [who, headers] of [['no credential', {}], ['a wrong secret', { [HEADER.peerAuth]: 'x'.repeat(40) }], ['the admin client token', bearer(tokens.admin)]] as const) {
      const res = await peerCall('POST', routerPeer + INTERNAL_REPLICATION.inSync, { headers, body: inSync })
      t.equal(res.status, 401, `coordinator peer port, in-sync change with ${who}: 401`)
      const follow = await peerCall('GET', `${routerPeer}${INTERNAL_COORDINATOR.mapFollow}?after=-1&wait=0`, { headers })
      t.equal(follow.status, 401, `coordinator peer port, following the map with ${who}: 401`)
    }
    t.equal((await peerCall('POST', c.routerUrl + INTERNAL_REPLICATION.inSync, { body: inSync })).status, 404, 'router client port: no internal endpoint (404)')
  })

  await t.test('admin calls and data outside a token\'s roles or prefix', async (t) => {
    const addGroup = { id: 'evil', url: 'http://127.0.0.1:9', weight: 1 }
    const cases: Array<[string, Record<string, string>, number]> = [['no token', {}, 401], ['an unknown token', bearer(newToken()), 401], ['a read token', bearer(tokens.reader), 403], ['a read-write token', bearer(tokens.app), 403]]
    for (const [who, headers] of cases) {
      const res = await raw(c, 'POST', ADMIN.groups, { ...headers, 'content-type': 'application/json' }, JSON.stringify(addGroup))
      t.equal(res.status, status(res, who, `POST ${ADMIN.groups}`, headers, cases), `POST ${ADMIN.groups} with ${who}: ${res.status}`)
      t.equal((await raw(c, 'DELETE', `${ADMIN.groups}/g1`, headers)).status, headers.authorization === undefined || who === 'an unknown token' ? 401 : 403, `DELETE ${ADMIN.groups}/g1 with ${who}`)
    }
    t.equal((await raw(c, 'PUT', kvPath('adv/forged'), { ...bearer(tokens.reader), 'content-type': 'text/plain' }, 'x')).status, 403, 'a read token cannot write')
    t.equal((await raw(c, 'PUT', kvPath('forged'), { ...bearer(tokens.app), 'content-type': 'text/plain' }, 'x')).status, 403, 'a prefixed token cannot write outside its prefix')
    t.equal((await raw(c, 'GET', kvPath('adv/c0/k0'), bearer(newToken()))).status, 401, 'an unknown token cannot read (GET fast path)')
    const batch = JSON.stringify({ ops: [{ op: 'put', key: 'adv/forged', value: b64('x') }, { op: 'put', key: 'forged', value: b64('x') }] })
    t.equal((await raw(c, 'POST', '/batch', { ...bearer(tokens.app), 'content-type': 'application/json' }, batch)).status, 403, 'a batch with one key outside the prefix is refused whole')
    for (const n of nodes) {
      t.equal((await peerCall('PUT', n.data + kvPath('adv/forged'), { headers: { 'content-type': 'application/json' }, body: 'x' })).status, 401, `${n.name} data port without a token: 401`)
    }
  })

  await t.test('a request id reused by another principal or for another operation', async (t) => {
    const key = 'adv/reused'
    const id = newRequestId()
    const first = await appHttp.request('PUT', c.routerUrl + kvPath(key), { body: 'first', headers: { 'content-type': 'text/plain', [HEADER.requestId]: id } })
    t.equal(first.status, 201, 'the first write applies')
    const byOther = await otherHttp.request('PUT', c.routerUrl + kvPath(key), { body: 'second', headers: { 'content-type': 'text/plain', [HEADER.requestId]: id } })
    t.equal(byOther.status, 422, `the same id from another principal: 422 (${byOther.text()})`)
    const otherValue = await appHttp.request('PUT', c.routerUrl + kvPath(key), { body: 'third', headers: { 'content-type': 'text/plain', [HEADER.requestId]: id } })
    t.equal(otherValue.status, 422, 'the same id for another value: 422')
    const asDelete = await appHttp.request('DELETE', c.routerUrl + kvPath(key), { headers: { [HEADER.requestId]: id } })
    t.equal(asDelete.status, 422, 'the same id for a DELETE: 422')
    const retry = await appHttp.request('PUT', c.routerUrl + kvPath(key), { body: 'first', headers: { 'content-type': 'text/plain', [HEADER.requestId]: id } })
    t.equal(retry.status, 201, 'a true retry is answered with the first result')
    t.equal(retry.header('etag'), first.header('etag'), 'with the first write\'s ETag')
    const now = await appHttp.request('GET', c.routerUrl + kvPath(key))
    t.equal(now.text(), 'first', 'the value is the first write\'s')
  })

  await t.test('slow headers, slow bodies and connection floods', async (t) => {
    for (const url of [c.routerUrl, nodes[0]?.data as string, nodes[0]?.peer as string]) {
      const head = await drip(url, 'GET /healthz HTTP/1.1\r\n', 'Host: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n', 250)
      t.ok(head.closedAfterMs < 10_000, `${url}: a header drip is cut after ${head.closedAfterMs} ms (headers timeout 1.5 s)`)
      const body = await drip(url, `PUT ${kvPath('adv/slow')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.app}\r\nContent-Type: text/plain\r\nContent-Length: 200\r\n\r\n`, 'x'.repeat(200), 250)
      t.ok(body.closedAfterMs < 12_000, `${url}: a body drip is cut after ${body.closedAfterMs} ms (request timeout 3 s)`)
      t.ok(body.status === 408 || body.status === 401 || body.status === 404 || body.status === undefined, `${url}: answered ${String(body.status)} or closed`)
    }
    for (const url of [c.routerUrl, nodes[1]?.peer as string]) {
      const { sockets, closedByServer } = await flood(url, 160, 1500)
      t.ok(closedByServer >= 160 - 96, `${url}: ${closedByServer} of 160 idle connections closed at once (cap 96 per process)`)
      for (const s of sockets) s.destroy()
    }
    t.equal((await appHttp.request('GET', c.routerUrl + kvPath('adv/slow'))).status, 404, 'the dripped PUT wrote nothing')
  })

  load.stop()
  const stats = await running
  t.comment(`load: ${formatStats(stats)}`)
  t.ok(stats.ops > 200, `the workload ran throughout (${stats.ops} ops)`)
  t.equal(stats.failedRequests, 0, `no workload request failed: ${JSON.stringify(stats.failures.slice(0, 5))}`)
  const report = await load.verify()
  t.ok(report.ok, `history: ${report.text}`)
  await c.waitForView(allReplicasInSync, 'every replica in sync', 60_000)
  t.equal(await observe(c, c.http), before, 'epochs, terms, roles, in-sync sets unchanged; no forged key exists')
})

/** One forged request per internal endpoint; each, if accepted, would change or leak something. */
function internalProbes (n: Target, routerPeer: string, primary: boolean): Array<{ method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown }> {
  const map = { epoch: 1_000_000, ring: { vnodesPerWeight: 8, algorithm: 'md5' }, groups: [{ id: 'g1', weight: 1, state: 'active', nodes: [{ url: n.data, role: 'primary' }] }] }
  const row = { key: 'forged', value: b64('forged'), contentType: 'text/plain', version: '999-forged' }
  const probes: Array<{ method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown }> = [
    { method: 'PUT', path: INTERNAL.map, body: { group: 'g1', self: n.data, coordinator: routerPeer, map } },
    { method: 'POST', path: INTERNAL.migrationScan, body: { after: 0, limit: 10 } },
    { method: 'POST', path: INTERNAL.migrationImport, body: { rows: [row], requests: [], floor: 0 } },
    { method: 'POST', path: INTERNAL.migrationPurge, body: { after: '', limit: 10 } },
    { method: 'GET', path: INTERNAL.stats },
    { method: 'GET', path: `${INTERNAL.rowPrefix}adv%2Fc0%2Fk0` }
  ]
  if (primary) probes.push({ method: 'POST', path: INTERNAL_REPLICATION.lease, body: { group: 'g1', term: 1, leaseUntil: Date.now() + 10 * 365 * 86_400_000, coordinator: routerPeer } })
  else probes.push({ method: 'POST', path: INTERNAL_REPLICATION.apply, body: { group: 'g1', term: 1, sender: n.data, from: 0, to: 1, rows: [{ ...row, seq: 1, deleted: false }], requests: [], floor: 0 } })
  return probes
}

/** The coordinator's peer URL, from its "listening" log line. */
async function coordinatorPeerUrl (c: TestCluster): Promise<string> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const m = /"peerUrl":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(c.output())
    if (m !== null) return m[1] as string
    if (Date.now() > deadline) throw new Error('the coordinator logged no peerUrl')
    await sleep(100)
  }
}

async function waitForOps (load: LoadGenerator, n: number): Promise<void> {
  const deadline = Date.now() + 60_000
  while (load.checker.counts.writesAcked < n) {
    if (Date.now() > deadline) throw new Error(`the workload acknowledged fewer than ${n} writes in a minute`)
    await sleep(100)
  }
}

async function raw (c: TestCluster, method: string, path: string, headers: Record<string, string>, body?: string): Promise<HttpResponse> {
  // A client of its own, without the cluster client's admin token.
  const http = new HttpClient({ connections: 1 })
  try {
    return await http.request(method, c.routerUrl + path, { headers, body })
  } finally {
    await http.close()
  }
}

function status (_res: HttpResponse, who: string, _what: string, _headers: Record<string, string>, cases: Array<[string, Record<string, string>, number]>): number {
  return cases.find(([w]) => w === who)?.[2] ?? 0
}
