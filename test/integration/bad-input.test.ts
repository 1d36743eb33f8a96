import t from 'tap'
import { newRequestId } from '../../src/protocol/request-id'
import { startCluster, isAlive } from '../harness/cluster'
import { rawRequest, type RawResult } from '../harness/raw'
import { kvPath } from '../../src/protocol/key'
import { GroupRing } from '../../src/ring/ring'

/**
 * Guarantee 5: bad input is refused with a clear 4xx and changes nothing; no request
 * can crash a process. Everything is sent both to the router and straight to a shard
 * node. Afterwards every process is the same PID, still serving, and no shard node's
 * replication position moved (so nothing at all was written).
 */

const LIMIT = 4096

function req (method: string, path: string, port: string, headers: string[] = [], body = ''): string {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...headers]
  if (body !== '' && !headers.some((h) => /^content-length:/i.test(h) || /^transfer-encoding:/i.test(h))) lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
  return lines.join('\r\n') + '\r\n\r\n' + body
}

function describe (r: RawResult): string {
  return r.status === undefined ? `no response (${r.closedByServer ? 'closed' : 'timeout'}${r.error === undefined ? '' : `, ${r.error}`})` : `${r.status} ${r.body.slice(0, 100)}`
}

function expectJson4xx (t: tap.Test, r: RawResult, status: number | number[], code: string | undefined, what: string): void {
  const statuses = Array.isArray(status) ? status : [status]
  t.ok(r.status !== undefined && statuses.includes(r.status), `${what}: ${statuses.join('/')} (got ${describe(r)})`)
  if (r.status === undefined) return
  t.match(r.headers['content-type'] ?? '', /application\/json/, `${what}: JSON`)
  let body: { error?: string, message?: string } = {}
  try { body = JSON.parse(r.body) } catch { t.fail(`${what}: body is not JSON: ${r.body.slice(0, 100)}`) }
  if (code !== undefined) t.equal(body.error, code, `${what}: error ${code}`)
  t.ok(typeof body.message === 'string' && body.message.length > 0, `${what}: has a message`)
}

t.test('bad input is refused, changes nothing, crashes nothing', async (t) => {
  const c = await startCluster(t, {
    name: 'bad-input',
    groups: 2,
    workers: 2,
    shardArgs: ['--max-value-bytes', String(LIMIT)],
    routerArgs: ['--max-value-bytes', String(LIMIT)]
  })
  const { http } = c

  // Seed: the values that must survive, and their ETags.
  const seeded = new Map<string, { value: string, etag: string }>()
  for (let i = 0; i < 10; i++) {
    const key = `bi/${i}`
    const value = `original ${i}`
    const res = await http.put(c.routerUrl, key, value, { 'content-type': 'text/plain' })
    t.equal(res.status, 201, `seed ${key}`)
    seeded.set(key, { value, etag: res.header('etag') ?? '' })
  }
  const pidsBefore = await c.pids()
  const positionsBefore = new Map<string, number>()
  for (const s of c.primaries) positionsBefore.set(s.group, (await c.health(s)).position)
  // Straight to a shard node, use keys it owns: others it refuses with 421 anyway.
  const view = await http.getJson<{ ring: { vnodesPerWeight: number, algorithm: 'md5' }, groups: Array<{ id: string, weight: number, state: string }> }>(`${c.routerUrl}/cluster`)
  const ring = new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
  const ownedBy = (group: string, prefix: string): string => {
    for (let i = 0; ; i++) if (ring.ownerOf(`${prefix}${i}`) === group) return `${prefix}${i}`
  }
  const targets = [
    { name: 'router', url: c.routerUrl, victimKey: 'bi/0', freshKey: 'bi/never' },
    { name: 'shard g1', url: c.primaries[0]!.url, victimKey: [...seeded.keys()].find((k) => ring.ownerOf(k) === 'g1')!, freshKey: ownedBy('g1', 'bi/never-') }
  ]
  t.ok(targets[1]!.victimKey !== undefined, `g1 owns seeded key ${targets[1]!.victimKey}`)
  const neverKeys = targets.map((x) => x.freshKey)
  for (const target of targets) {
    const port = new URL(target.url).port
    const victimPath = kvPath(target.victimKey)
    const freshPath = kvPath(target.freshKey)
    await t.test(`${target.name}: malformed percent-encoding`, async (t) => {
      for (const seg of ['%E0%A4%A', '%FF', '%', '%zz', 'ok%C0%AF', '%ED%A0%80']) {
        for (const method of ['GET', 'PUT', 'DELETE']) {
          const r = await rawRequest(target.url, req(method, `/kv/${seg}`, port, ['Connection: close'], method === 'PUT' ? 'x' : ''))
          expectJson4xx(t, r, 400, 'invalid_key', `${method} /kv/${seg}`)
        }
      }
    })

    await t.test(`${target.name}: 64 KiB of headers`, async (t) => {
      const big = `X-Big: ${'a'.repeat(64 * 1024)}`
      const r1 = await rawRequest(target.url, req('GET', victimPath, port, [big]))
      expectJson4xx(t, r1, 431, 'headers_too_large', 'GET with a 64 KiB header')
      const many = Array.from({ length: 2048 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}`)
      const r2 = await rawRequest(target.url, req('PUT', victimPath, port, many, 'overwritten'))
      expectJson4xx(t, r2, 431, 'headers_too_large', 'PUT with 2048 headers (64 KiB)')
      const r3 = await rawRequest(target.url, req('PUT', freshPath, port, [big], 'x'))
      expectJson4xx(t, r3, 431, 'headers_too_large', 'PUT a new key with a 64 KiB header')
    })

    await t.test(`${target.name}: body over the limit`, async (t) => {
      const r1 = await rawRequest(target.url, req('PUT', victimPath, port, ['Content-Type: text/plain', 'Connection: close'], 'y'.repeat(LIMIT + 1)))
      expectJson4xx(t, r1, 413, 'value_too_large', `PUT ${LIMIT + 1} bytes`)
      // A huge declared length must be refused before the body is read.
      const r2 = await rawRequest(target.url, req('PUT', victimPath, port, [`Content-Length: ${1024 * 1024 * 1024}`, 'Connection: close'], 'z'.repeat(100)), { timeoutMs: 5000 })
      expectJson4xx(t, r2, 413, 'value_too_large', 'PUT declaring 1 GiB')
      const chunked = `${(LIMIT + 100).toString(16)}\r\n${'c'.repeat(LIMIT + 100)}\r\n0\r\n\r\n`
      const r3 = await rawRequest(target.url, req('PUT', freshPath, port, ['Transfer-Encoding: chunked', 'Connection: close'], chunked))
      t.ok(r3.status === 413 || r3.status === undefined, `chunked body over the limit: 413 or dropped (got ${describe(r3)})`)
    })

    await t.test(`${target.name}: wrong methods`, async (t) => {
      for (const method of ['POST', 'PATCH', 'OPTIONS']) {
        const r = await rawRequest(target.url, req(method, victimPath, port, ['Connection: close'], method === 'OPTIONS' ? '' : 'w'))
        expectJson4xx(t, r, 405, 'method_not_allowed', `${method} on a key`)
        t.match(r.headers.allow ?? '', /GET/, `${method}: Allow header`)
      }
      const unknown = await rawRequest(target.url, req('FROB', victimPath, port, ['Connection: close']))
      t.ok(unknown.status === undefined || (unknown.status >= 400 && unknown.status < 500), `unknown method FROB: 4xx or closed (got ${describe(unknown)})`)
      const onHealth = await rawRequest(target.url, req('DELETE', '/healthz', port, ['Connection: close']))
      t.ok(onHealth.status === 404 || onHealth.status === 405, `DELETE /healthz: 404/405 (got ${describe(onHealth)})`)
    })

    await t.test(`${target.name}: garbage on the wire`, async (t) => {
      const garbage: Array<[string, string | Buffer]> = [
        ['a request line without a version', 'GARBAGE\r\n\r\n'],
        ['an unknown HTTP version', `GET ${victimPath} HTTP/9.9\r\nHost: x\r\n\r\n`],
        ['binary noise', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))],
        ['a header without a colon', `GET ${victimPath} HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n`],
        ['NUL in the request line', `GET /kv/a\u0000b HTTP/1.1\r\nHost: x\r\n\r\n`],
        ['a space in the path', `PUT /kv/a b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx`]
      ]
      for (const [what, bytes] of garbage) {
        const r = await rawRequest(target.url, bytes, { timeoutMs: 3000 })
        t.ok(r.status === undefined || (r.status >= 400 && r.status < 500), `${what}: 4xx or closed (got ${describe(r)})`)
      }
    })

    await t.test(`${target.name}: malformed conditional headers`, async (t) => {
      for (const h of ['If-Match: not-quoted', 'If-Match: "a" "b"', 'If-None-Match: *, "a"', 'If-Match: W/x']) {
        const r = await rawRequest(target.url, req('PUT', victimPath, port, [h, 'Connection: close'], 'conditional'))
        expectJson4xx(t, r, 400, 'invalid_header', `PUT with ${h}`)
        const d = await rawRequest(target.url, req('DELETE', victimPath, port, [h, 'Connection: close']))
        expectJson4xx(t, d, 400, 'invalid_header', `DELETE with ${h}`)
      }
      const stale = await rawRequest(target.url, req('PUT', victimPath, port, ['If-Match: "stale-version"', 'Connection: close'], 'nope'))
      expectJson4xx(t, stale, 412, 'precondition_failed', 'PUT with a well-formed but stale If-Match')
    })

    await t.test(`${target.name}: Content-Length lies`, async (t) => {
      // Declares 100 bytes, sends 10, then half-closes: the body never completes.
      const short = await rawRequest(target.url, req('PUT', victimPath, port, ['Content-Length: 100'], 'only ten!!'), { endAfterWrite: true, timeoutMs: 3000 })
      t.ok(short.status === undefined || (short.status >= 400 && short.status < 500), `short body then EOF: 4xx or closed (got ${describe(short)})`)
      // Declares 100 bytes, sends 10, then the client vanishes (RST).
      const gone = await rawRequest(target.url, req('PUT', freshPath, port, ['Content-Length: 100'], 'only ten!!'), { destroyAfterMs: 200 })
      t.equal(gone.status, undefined, 'no answer before the client vanished')
      for (const h of [['Content-Length: abc'], ['Content-Length: -1'], ['Content-Length: 5', 'Content-Length: 6'], ['Content-Length: 5', 'Transfer-Encoding: chunked']]) {
        const r = await rawRequest(target.url, req('PUT', victimPath, port, [...h, 'Connection: close'], 'fives'), { timeoutMs: 3000 })
        t.ok(r.status === undefined || (r.status >= 400 && r.status < 500), `${h.join(' + ')}: 4xx or closed (got ${describe(r)})`)
      }
    })
  }

  await t.test('a client-sent request id is an idempotency key bound to its operation; other internal headers are not trusted', async (t) => {
    const key = 'bi/internal-headers'
    const id = newRequestId()
    const h = { 'x-shardkv-request-id': id, 'content-type': 'text/plain' }
    const first = await http.put(c.routerUrl, key, 'first', h)
    const retried = await http.put(c.routerUrl, key, 'first', h)
    t.equal(first.status, 201)
    t.equal(retried.status, 201, 'a retry with the same request id is answered as the first attempt was')
    t.equal(retried.header('etag'), first.header('etag'), 'with the same ETag: it was not applied again')
    const second = await http.put(c.routerUrl, key, 'second', { ...h, 'x-shardkv-request-id': newRequestId() })
    t.equal(second.status, 200, 'another request id is another write')
    t.equal((await http.get(c.routerUrl, key)).text(), 'second', 'and it is applied')
    // The same id with another operation is refused, never answered with the first one's result.
    const reusedValue = await http.put(c.routerUrl, key, 'other value', h)
    t.equal(reusedValue.status, 422, 'the same id with another value: 422')
    t.equal(reusedValue.json<{ error: string }>().error, 'idempotency_key_reused')
    const reusedDelete = await http.del(c.routerUrl, key, { 'x-shardkv-request-id': id })
    t.equal(reusedDelete.status, 422, 'the same id for a DELETE: 422, nothing deleted')
    t.equal((await http.get(c.routerUrl, key)).text(), 'second', 'neither changed the key')
    for (const bad of ['not valid!', 'client-chosen-id', '1.short', `${'z'.repeat(12)}.abcdefghijkl`]) {
      const invalid = await http.put(c.routerUrl, key, 'third', { ...h, 'x-shardkv-request-id': bad })
      t.equal(invalid.status, 400, `a malformed request id (${bad}) is refused, as the nodes refuse it`)
      t.equal(invalid.json<{ error: string }>().error, 'invalid_header')
    }
    const expired = await http.put(c.routerUrl, key, 'stale', { ...h, 'x-shardkv-request-id': newRequestId(Date.now() - 3_600_000) })
    t.equal(expired.status, 500, 'an id older than the nodes\' window: outcome unknown (5xx), not applied')
    t.equal(expired.json<{ error: string }>().error, 'request_id_expired')
    t.equal((await http.get(c.routerUrl, key)).text(), 'second', 'the key still holds the acknowledged write')
    const bogus = await http.put(c.routerUrl, key, 'fourth', { 'x-shardkv-epoch': 'not-a-number', 'content-type': 'text/plain' })
    t.ok(bogus.status === 200 || bogus.status === 400, `a bogus client epoch header: 200 (ignored) or 400 (got ${bogus.status})`)
    await http.del(c.routerUrl, key)
    // Restore the position baseline: this subtest wrote on purpose.
    for (const s of c.primaries) positionsBefore.set(s.group, (await c.health(s)).position)
  })

  await t.test('afterwards: same processes, same data, nothing written', async (t) => {
    const pidsAfter = await c.pids()
    t.same([...pidsAfter], [...pidsBefore], 'router, primaries and workers are the same PIDs')
    for (const p of c.launched) t.ok(p.running(), `${p.name} (pid ${p.pid}) never exited`)
    for (const pids of pidsAfter.values()) for (const pid of pids) t.ok(isAlive(pid), `pid ${pid} alive`)
    for (const s of c.primaries) {
      t.equal((await c.health(s)).position, positionsBefore.get(s.group), `${s.group}: replication position unchanged (nothing written)`)
    }
    for (const [key, { value, etag }] of seeded) {
      const res = await http.get(c.routerUrl, key)
      t.equal(res.status, 200, `${key} still there`)
      t.equal(res.text(), value, `${key} value unchanged`)
      t.equal(res.header('etag'), etag, `${key} ETag unchanged`)
    }
    for (const k of neverKeys) t.equal((await http.get(c.routerUrl, k)).status, 404, `${k}: no key was created by refused requests`)
    const put = await http.put(c.routerUrl, 'bi/after', 'works', { 'content-type': 'text/plain' })
    t.equal(put.status, 201, 'a normal write still works')
    t.equal((await http.get(c.routerUrl, 'bi/after')).text(), 'works', 'and reads back')
  })
})
