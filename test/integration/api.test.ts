import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { startCluster, type TestCluster } from '../harness/cluster'
import type { HttpResponse } from '../harness/http'
import { rawRequest } from '../harness/raw'
import { GroupRing } from '../../src/ring/ring'
import { kvPath } from '../../src/protocol/key'
import { ERROR_STATUS, type ErrorCode } from '../../src/protocol/errors'

/**
 * The data API end to end: a router over three single-node shard groups, real
 * processes, real SQLite files. The value limit is lowered so limit checks are
 * cheap; one small extra cluster checks the 1 MiB default.
 */

const LIMIT = 70_000
const OCTET = 'application/octet-stream'

function expectError (t: tap.Test, res: HttpResponse, status: number, code: ErrorCode, what: string): void {
  t.equal(res.status, status, `${what}: status ${status}`)
  t.equal(ERROR_STATUS[code], status, `${what}: ${code} is a ${status} in errors.ts`)
  t.match(res.header('content-type') ?? '', /^application\/json/, `${what}: JSON content type`)
  let body: { error?: unknown, message?: unknown } = {}
  try {
    body = res.json()
  } catch (err) {
    t.fail(`${what}: body is not JSON: ${res.text().slice(0, 200)}`)
    return
  }
  t.equal(body.error, code, `${what}: error code ${code}`)
  t.ok(typeof body.message === 'string' && body.message.length > 0, `${what}: has a message`)
}

function etagOf (res: HttpResponse): string {
  return res.header('etag') ?? ''
}

t.test('data API through the router over 3 shard groups', async (t) => {
  const c: TestCluster = await startCluster(t, {
    name: 'api',
    groups: 3,
    workers: 2,
    shardArgs: ['--max-value-bytes', String(LIMIT)],
    routerArgs: ['--max-value-bytes', String(LIMIT)]
  })
  const { http } = c
  const r = c.routerUrl

  await t.test('health and metrics endpoints', async (t) => {
    const h = await http.getJson(`${r}/healthz`)
    t.match(h, { status: 'ok', role: 'router' })
    t.ok(Number.isInteger(h.epoch) && h.epoch >= 1, `router epoch ${String(h.epoch)}`)
    for (const s of c.primaries) {
      const sh = await c.health(s)
      t.match(sh, { status: 'ok', nodeId: s.nodeId, group: s.group, pid: s.proc.pid }, `${s.group}: /healthz`)
      // INTERFACES.md says "role":"shard"; the listening line moved that to "service" (role is now the
      // replication role), so either spelling names the process kind.
      const kind = (sh as unknown as { service?: string }).service ?? sh.role
      t.equal(kind, 'shard', `${s.group}: /healthz names the process kind shard (service ${String((sh as unknown as { service?: string }).service)}, role ${sh.role})`)
      t.equal(sh.workerPids.length, 2, `${s.group}: 2 workers`)
      t.ok(sh.workerPids.includes(sh.workerPid), `${s.group}: answered by one of its workers`)
    }
    for (const url of [r, c.primaries[0]!.url]) {
      const m = await http.request('GET', `${url}/metrics`)
      t.equal(m.status, 200, `${url}/metrics`)
      t.match(m.text(), /shardkv_/, 'Prometheus text with shardkv_ metrics')
    }
  })

  await t.test('binary values round-trip byte for byte', async (t) => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const random = randomBytes(64 * 1024)
    const cases: Array<[string, Buffer]> = [['all-bytes', all], ['random-64k', random], ['empty', Buffer.alloc(0)], ['nul', Buffer.from([0])]]
    for (const [key, value] of cases) {
      const put = await http.put(r, `bin/${key}`, value)
      t.equal(put.status, 201, `${key}: created`)
      const get = await http.get(r, `bin/${key}`)
      t.equal(get.status, 200, `${key}: read`)
      t.equal(get.body.length, value.length, `${key}: ${value.length} bytes back`)
      t.ok(get.body.equals(value), `${key}: identical bytes`)
      t.equal(get.header('content-type'), OCTET, `${key}: content type`)
    }
    const again = await http.put(r, 'bin/all-bytes', Buffer.from(all).reverse())
    t.equal(again.status, 200, 'replacing answers 200')
    t.ok((await http.get(r, 'bin/all-bytes')).body.equals(Buffer.from(all).reverse()), 'replaced value reads back')
  })

  await t.test('unicode, space, slash and other keys', async (t) => {
    const keys = [
      'ключ-🔑-键-مفتاح', 'with space', 'a/b/c', '/leading', 'trailing/', '%', '%2F', 'a%2Fb', '?query#frag', '+plus+',
      '__proto__', 'constructor', 'é', 'e\u0301', 'x'.repeat(1024), '€'.repeat(341) + 'a', '.', '..'
    ]
    for (const key of keys) {
      const value = Buffer.from(`value of ${key}`)
      const put = await http.put(r, key, value)
      t.equal(put.status, 201, `${JSON.stringify(key).slice(0, 40)}: created (${put.status} ${put.status >= 400 ? put.text() : ''})`)
    }
    for (const key of keys) {
      const get = await http.get(r, key)
      t.equal(get.status, 200, `${JSON.stringify(key).slice(0, 40)}: found`)
      t.equal(get.text(), `value of ${key}`, `${JSON.stringify(key).slice(0, 40)}: its own value`)
    }
    // 'é' precomposed and decomposed are different keys (no Unicode normalization).
    t.not((await http.get(r, 'é')).text(), (await http.get(r, 'e\u0301')).text())
    // A raw slash in the path is not a key.
    expectError(t, await http.request('GET', `${r}/kv/a/b/c`), 400, 'invalid_key', 'raw slash')
  })

  await t.test('Content-Type is kept', async (t) => {
    const types = ['application/json; charset=utf-8', 'text/plain', 'image/png', 'application/x-custom+foo; v=1']
    for (const [i, type] of types.entries()) {
      await http.put(r, `ct/${i}`, Buffer.from('x'), { 'content-type': type })
      t.equal((await http.get(r, `ct/${i}`)).header('content-type'), type, type)
    }
    // No Content-Type at all (raw request: HTTP clients tend to add one).
    const port = new URL(r).port
    const res = await rawRequest(r, `PUT ${kvPath('ct/none')} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`)
    t.equal(res.status, 201, 'PUT without Content-Type accepted')
    const get = await http.get(r, 'ct/none')
    t.equal(get.header('content-type'), OCTET, 'stored as application/octet-stream')
    t.equal(get.text(), 'abc')
  })

  await t.test('ETag on PUT and GET', async (t) => {
    const put = await http.put(r, 'etag/k', 'one')
    t.equal(put.status, 201)
    const etag = etagOf(put)
    t.match(etag, /^"[^"]+"$/, `strong quoted ETag ${etag}`)
    t.equal(`"${put.json<{ version: string }>().version}"`, etag, 'body {version} matches the ETag')
    const get = await http.get(r, 'etag/k')
    t.equal(etagOf(get), etag, 'GET carries the same ETag')
    const put2 = await http.put(r, 'etag/k', 'two')
    t.not(etagOf(put2), etag, 'a new write gets a new ETag')
    t.equal(etagOf(await http.get(r, 'etag/k')), etagOf(put2))
    const head = await http.request('HEAD', `${r}${kvPath('etag/k')}`)
    t.equal(head.status, 200, 'HEAD')
    t.equal(etagOf(head), etagOf(put2), 'HEAD carries the ETag')
    t.equal(head.body.length, 0, 'HEAD has no body')
    t.equal(head.header('content-length'), '3', 'HEAD tells the length GET would send')
    t.equal(head.header('content-type'), OCTET, 'HEAD carries the stored content type')
  })

  await t.test('If-Match', async (t) => {
    const v1 = etagOf(await http.put(r, 'im/k', 'v1'))
    const ok = await http.put(r, 'im/k', 'v2', { 'if-match': v1 })
    t.equal(ok.status, 200, 'If-Match with the current ETag succeeds')
    const v2 = etagOf(ok)
    expectError(t, await http.put(r, 'im/k', 'v3', { 'if-match': v1 }), 412, 'precondition_failed', 'If-Match with an old ETag')
    t.equal((await http.get(r, 'im/k')).text(), 'v2', 'a failed condition changes nothing')
    t.equal((await http.put(r, 'im/k', 'v3', { 'if-match': `"nope", ${v2}` })).status, 200, 'If-Match with a list containing the current ETag')
    t.equal((await http.put(r, 'im/k', 'v4', { 'if-match': '*' })).status, 200, 'If-Match: * on an existing key')
    expectError(t, await http.put(r, 'im/absent', 'x', { 'if-match': '*' }), 412, 'precondition_failed', 'If-Match: * on an absent key')
    expectError(t, await http.put(r, 'im/absent', 'x', { 'if-match': v1 }), 412, 'precondition_failed', 'If-Match on an absent key')
    t.equal((await http.get(r, 'im/absent')).status, 404, 'still absent')
    const cur = etagOf(await http.get(r, 'im/k'))
    expectError(t, await http.del(r, 'im/k', { 'if-match': v1 }), 412, 'precondition_failed', 'DELETE If-Match with an old ETag')
    t.equal((await http.get(r, 'im/k')).status, 200, 'not deleted')
    t.equal((await http.del(r, 'im/k', { 'if-match': cur })).status, 204, 'DELETE If-Match with the current ETag')
    t.equal((await http.get(r, 'im/k')).status, 404, 'deleted')
  })

  await t.test('If-Match compare-and-set is atomic across workers (no lost update)', async (t) => {
    const key = 'cas/counter'
    t.equal((await http.put(r, key, '0', { 'if-none-match': '*' })).status, 201)
    const CLIENTS = 8
    const INCREMENTS = 15
    let conflicts = 0
    let errors = 0
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
      let done = 0
      for (let attempt = 0; attempt < 400 && done < INCREMENTS; attempt++) {
        const cur = await http.get(r, key)
        if (cur.status !== 200) { errors++; continue }
        const res = await http.put(r, key, String(Number(cur.text()) + 1), { 'if-match': etagOf(cur) })
        if (res.status === 200) done++
        else if (res.status === 412) conflicts++
        else errors++
      }
    }))
    t.equal(errors, 0, 'no unexpected statuses')
    t.equal((await http.get(r, key)).text(), String(CLIENTS * INCREMENTS), `${CLIENTS * INCREMENTS} increments, none lost (${conflicts} conflicts answered 412)`)
  })

  await t.test('If-None-Match: * creates only', async (t) => {
    const first = await http.put(r, 'inm/k', 'first', { 'if-none-match': '*' })
    t.equal(first.status, 201, 'create when absent')
    expectError(t, await http.put(r, 'inm/k', 'second', { 'if-none-match': '*' }), 412, 'precondition_failed', 'create when present')
    t.equal((await http.get(r, 'inm/k')).text(), 'first', 'value unchanged')
    await http.del(r, 'inm/k')
    t.equal((await http.put(r, 'inm/k', 'third', { 'if-none-match': '*' })).status, 201, 'create after delete')
  })

  await t.test('GET If-None-Match -> 304', async (t) => {
    const etag = etagOf(await http.put(r, 'cache/k', 'cached'))
    const nm = await http.get(r, 'cache/k', { 'if-none-match': etag })
    t.equal(nm.status, 304, 'matching ETag: 304')
    t.equal(nm.body.length, 0, '304 has no body')
    t.equal(etagOf(nm), etag, '304 carries the ETag')
    t.equal((await http.get(r, 'cache/k', { 'if-none-match': `W/${etag}` })).status, 304, 'weak comparison for GET')
    t.equal((await http.get(r, 'cache/k', { 'if-none-match': '"other"' })).status, 200, 'other ETag: 200')
    t.equal((await http.get(r, 'cache/k', { 'if-none-match': `"other", ${etag}` })).status, 304, 'list containing it: 304')
  })

  await t.test('DELETE', async (t) => {
    await http.put(r, 'del/k', 'v')
    const d = await http.del(r, 'del/k')
    t.equal(d.status, 204, 'DELETE 204')
    t.equal(d.body.length, 0, 'no body')
    expectError(t, await http.get(r, 'del/k'), 404, 'not_found', 'GET after DELETE')
    t.equal((await http.del(r, 'del/k')).status, 204, 'DELETE again: 204 (idempotent)')
    t.equal((await http.del(r, 'del/never-written')).status, 204, 'DELETE of a never-written key: 204')
    t.equal((await http.request('HEAD', `${r}${kvPath('del/k')}`)).status, 404, 'HEAD after DELETE: 404')
  })

  await t.test('errors are JSON {error, message}', async (t) => {
    expectError(t, await http.get(r, 'err/absent'), 404, 'not_found', 'GET absent key')
    expectError(t, await http.request('GET', `${r}/nope`), 404, 'no_route', 'unknown path')
    expectError(t, await http.request('PUT', `${r}/kvx/a`, { body: 'x' }), 404, 'no_route', 'unknown prefix')
    expectError(t, await http.request('GET', `${r}/kv/`), 400, 'invalid_key', 'empty key')
    expectError(t, await http.request('PUT', `${r}/kv/`, { body: 'x' }), 400, 'invalid_key', 'PUT empty key')
    expectError(t, await http.request('GET', `${r}/kv/${'k'.repeat(1025)}`), 400, 'invalid_key', '1025-byte key')
    expectError(t, await http.request('PUT', `${r}/kv/${'k'.repeat(1025)}`, { body: 'x' }), 400, 'invalid_key', 'PUT 1025-byte key')
    expectError(t, await http.request('PUT', `${r}${kvPath('€'.repeat(341) + 'ab')}`, { body: 'x' }), 400, 'invalid_key', 'PUT 1025-byte multi-byte key')
    expectError(t, await http.request('GET', `${r}/kv/%E0%A4%A`), 400, 'invalid_key', 'truncated percent-encoding')
    expectError(t, await http.request('GET', `${r}/kv/%FF`), 400, 'invalid_key', 'invalid UTF-8')
    expectError(t, await http.request('PUT', `${r}/kv/a%zzb`, { body: 'x' }), 400, 'invalid_key', 'bad hex digits')
    expectError(t, await http.put(r, 'err/k', 'x', { 'if-match': 'not-quoted' }), 400, 'invalid_header', 'malformed If-Match')
    expectError(t, await http.put(r, 'err/k', 'x', { 'if-none-match': '"a" "b"' }), 400, 'invalid_header', 'malformed If-None-Match')
    t.equal((await http.get(r, 'err/k')).status, 404, 'nothing was written by refused requests')
    for (const method of ['POST', 'PATCH', 'OPTIONS']) {
      const res = await http.request(method, `${r}${kvPath('err/k')}`, { body: method === 'OPTIONS' ? undefined : 'x' })
      expectError(t, res, 405, 'method_not_allowed', method)
      const allow = (res.header('allow') ?? '').split(',').map((s) => s.trim()).sort()
      t.same(allow, ['DELETE', 'GET', 'HEAD', 'PUT'], `${method}: Allow: GET, HEAD, PUT, DELETE`)
    }
  })

  await t.test('value size limit', async (t) => {
    t.equal((await http.put(r, 'size/exact', Buffer.alloc(LIMIT, 7))).status, 201, `exactly ${LIMIT} bytes: accepted`)
    const back = await http.get(r, 'size/exact')
    t.equal(back.body.length, LIMIT, 'and read back whole')
    expectError(t, await http.put(r, 'size/over', Buffer.alloc(LIMIT + 1, 7)), 413, 'value_too_large', `${LIMIT + 1} bytes`)
    t.equal((await http.get(r, 'size/over')).status, 404, 'nothing stored')
    // Without Content-Length (chunked), the limit still holds.
    const chunked = await http.request('PUT', `${r}${kvPath('size/chunked')}`, {
      body: Readable.from([Buffer.alloc(LIMIT, 1), Buffer.alloc(10, 2)]) as any,
      headers: { 'content-type': OCTET }
    }).catch((err: Error) => err)
    if (chunked instanceof Error) {
      t.pass(`chunked over-limit body refused by closing the connection (${chunked.message})`)
    } else {
      expectError(t, chunked, 413, 'value_too_large', 'chunked body over the limit')
    }
    t.equal((await http.get(r, 'size/chunked')).status, 404, 'nothing stored')
    expectError(t, await http.put(r, 'size/exact', Buffer.alloc(LIMIT + 1, 9)), 413, 'value_too_large', 'replacing with too large a value')
    t.ok((await http.get(r, 'size/exact')).body.equals(Buffer.alloc(LIMIT, 7)), 'the old value stays')
  })

  await t.test('keys spread over all 3 groups, each on its ring owner', async (t) => {
    const cluster = await http.getJson<{ epoch: number, ring: { vnodesPerWeight: number, algorithm: 'md5' }, groups: Array<{ id: string, weight: number, state: string, points: number, nodes: Array<{ url: string, role: string, health: string }> }> }>(`${r}/cluster`)
    t.ok(Number.isInteger(cluster.epoch) && cluster.epoch >= 1, 'the map has an epoch')
    t.same(cluster.groups.map((g) => g.id).sort(), ['g1', 'g2', 'g3'], 'three groups')
    for (const g of cluster.groups) {
      const shard = c.primaries.find((s) => s.group === g.id)!
      t.equal(g.nodes.find((n) => n.role === 'primary')?.url, shard.url, `${g.id}: primary url`)
      t.ok(g.points > 0, `${g.id}: ${g.points} ring points`)
    }
    const ring = new GroupRing(cluster.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), cluster.ring)
    // Guarantee 3 needs the map installed on the shard nodes (the coordinator does that after start).
    for (const s of c.primaries) await c.waitForHealth(s, (h) => h.epoch === cluster.epoch)
    t.pass(`every shard node has epoch ${cluster.epoch} installed`)
    const before = new Map<string, number>()
    for (const s of c.primaries) before.set(s.group, (await c.health(s)).position)
    const perGroup = new Map<string, number>()
    let misplaced = 0
    let headerMismatch = 0
    const notMisdirected: string[] = []
    for (let i = 0; i < 90; i++) {
      const key = `spread/${i}`
      const owner = ring.ownerOf(key)!
      perGroup.set(owner, (perGroup.get(owner) ?? 0) + 1)
      const ownerShard = c.primaries.find((s) => s.group === owner)!
      const put = await http.put(r, key, `v${i}`)
      if (put.header('x-shardkv-node') !== ownerShard.nodeId) headerMismatch++
      for (const s of c.primaries) {
        const direct = await http.get(s.url, key)
        const has = direct.status === 200 && direct.text() === `v${i}`
        if (has !== (s.group === owner)) misplaced++
        if (s.group !== owner) {
          let body: { error?: string, epoch?: number, message?: string } = {}
          try { body = direct.json() } catch { /* reported below */ }
          if (direct.status !== 421 || body.error !== 'misdirected' || body.epoch !== cluster.epoch || typeof body.message !== 'string') {
            notMisdirected.push(`GET ${key} on ${s.group}: ${direct.status} ${direct.text().slice(0, 80)}`)
          }
        }
      }
    }
    t.equal(perGroup.size, 3, `keys spread over 3 groups: ${JSON.stringify([...perGroup])}`)
    t.equal(misplaced, 0, 'every key is stored on its ring owner and nowhere else')
    t.equal(headerMismatch, 0, 'x-shardkv-node names the owner node')
    t.same(notMisdirected.slice(0, 5), [], 'a shard node answers 421 {error: misdirected, epoch} for keys it does not own')
    // And refuses to write them.
    const foreignKey = 'spread/0'
    const foreign = c.primaries.find((s) => s.group !== ring.ownerOf(foreignKey))!
    const direct = await http.put(foreign.url, foreignKey, 'misdirected write')
    expectError(t, direct, 421, 'misdirected', `PUT ${foreignKey} straight to non-owner ${foreign.group}`)
    t.equal((await http.get(r, foreignKey)).text(), 'v0', 'the misdirected write changed nothing')
    for (const s of c.primaries) {
      const pos = (await c.health(s)).position
      t.equal(pos - (before.get(s.group) ?? 0), perGroup.get(s.group) ?? 0, `${s.group}: position advanced by the writes it owns`)
    }
  })

  await t.test('every process is still the one we started', async (t) => {
    for (const p of c.launched) t.ok(p.running(), `${p.name} (pid ${p.pid}) still running`)
  })
})

t.test('the default value limit is 1 MiB', async (t) => {
  const c = await startCluster(t, { name: 'api-default', groups: 1, workers: 1 })
  const MIB = 1024 * 1024
  t.equal((await c.http.put(c.routerUrl, 'big/exact', randomBytes(MIB))).status, 201, '1 MiB accepted')
  t.equal((await c.http.get(c.routerUrl, 'big/exact')).body.length, MIB, '1 MiB read back')
  expectError(t, await c.http.put(c.routerUrl, 'big/over', Buffer.alloc(MIB + 1)), 413, 'value_too_large', '1 MiB + 1 byte')
  // Straight to the shard node: it enforces the same default.
  expectError(t, await c.http.put(c.primaries[0]!.url, 'big/over', Buffer.alloc(MIB + 1)), 413, 'value_too_large', 'shard node: 1 MiB + 1 byte')
  t.equal((await c.http.get(c.routerUrl, 'big/over')).status, 404, 'nothing stored')
})
