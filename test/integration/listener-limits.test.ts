import t from 'tap'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:http'
import { startCluster, isAlive } from '../harness/cluster'
import { drip, flood } from '../harness/adversary'
import { ADMIN, BATCH_PATH, CLUSTER_PATH } from '../../src/protocol/wire'

/**
 * Every port is reachable by strangers (issue 8, limits): a client that sends its
 * headers or its body a byte at a time is cut within the configured timeouts (408 with
 * a JSON error where an answer is possible), idle connections past the cap are closed at
 * once, and none of it changes data or takes a process down. Stored content types are
 * bounded, values are served with `X-Content-Type-Options: nosniff`, and JSON endpoints
 * refuse any other content type (no cross-site form posts); an admin call naming a URL
 * that is not a shardkv node relays nothing of what that address answered. Router and shard
 * nodes share the listener setup (src/http/server.ts); both are probed.
 */

const LIMITS = ['--headers-timeout-ms', '1000', '--request-timeout-ms', '2000', '--max-connections', '40']

t.test('slow clients are cut, connection floods are capped, stored content types are bounded', async (t) => {
  const c = await startCluster(t, { name: 'limits', groups: 1, workers: 1, routerArgs: LIMITS, shardArgs: LIMITS })
  const node = c.primaries[0]
  if (node === undefined) throw new Error('no shard')
  const put = await c.http.put(c.routerUrl, 'lim/k', 'kept', { 'content-type': 'text/plain' })
  t.equal(put.status, 201)
  const pidsBefore = await c.pids()

  for (const [name, url] of [['router', c.routerUrl], ['shard node', node.url]] as const) {
    const headers = await drip(url, 'GET /kv/lim%2Fk HTTP/1.1\r\n', 'Host: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n', 200)
    t.ok(headers.closedAfterMs < 6000, `${name}: a header drip is cut after ${headers.closedAfterMs} ms (headers timeout 1 s, checked every second)`)
    t.equal(headers.status, 408, `${name}: answered 408`)
    t.match(headers.body, /"error":"request_timeout"/, `${name}: with the JSON error`)

    const body = await drip(url, 'PUT /kv/lim%2Fslow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n', 'x'.repeat(100), 200)
    t.ok(body.closedAfterMs < 8000, `${name}: a body drip is cut after ${body.closedAfterMs} ms (request timeout 2 s)`)
    t.ok(body.status === 408 || body.status === undefined, `${name}: 408 or closed (got ${String(body.status)})`)

    const { sockets, closedByServer } = await flood(url, 70, 1500)
    t.ok(closedByServer >= 70 - 40 - 2, `${name}: of 70 idle connections, ${closedByServer} were closed at once (cap 40)`)
    for (const s of sockets) s.destroy()
    // The cap frees up as the flood goes away: a normal request is served again.
    let served = 0
    for (let attempt = 0; attempt < 50 && served === 0; attempt++) {
      const res = await c.http.get(url === c.routerUrl ? c.routerUrl : node.url, 'lim/k').catch(() => undefined)
      if (res?.status === 200 || res?.status === 421) served++
      else await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.equal(served, 1, `${name}: serves again once the flood is gone`)
  }

  t.equal((await c.http.get(c.routerUrl, 'lim/slow')).status, 404, 'the cut PUT stored nothing')
  const read = await c.http.get(c.routerUrl, 'lim/k')
  t.equal(read.text(), 'kept', 'the stored value is untouched')
  t.equal(read.header('x-content-type-options'), 'nosniff', 'values are served with nosniff (router)')
  const direct = await c.http.get(node.url, 'lim/k')
  t.equal(direct.header('x-content-type-options'), 'nosniff', 'and by the shard node')

  for (const bad of [`text/plain; p=${'x'.repeat(250)}`, 'text/plain;\tcharset=utf-8']) {
    const res = await c.http.put(c.routerUrl, 'lim/ct', 'v', { 'content-type': bad })
    t.equal(res.status, 400, `a content type that is ${bad.length > 256 ? 'too long' : 'not printable ASCII'} is refused`)
    t.equal(res.json<{ error: string }>().error, 'invalid_header')
  }
  t.equal((await c.http.get(c.routerUrl, 'lim/ct')).status, 404, 'and nothing was stored')

  // JSON endpoints take application/json only: no cross-site form post reaches them.
  const batch = JSON.stringify({ ops: [{ op: 'put', key: 'lim/form', value: 'dg==' }] })
  for (const [what, url] of [['router batch', c.routerUrl + BATCH_PATH], ['node batch', node.url + BATCH_PATH], ['admin', c.routerUrl + ADMIN.groups]] as const) {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', undefined]) {
      const res = await c.http.request('POST', url, { body: what === 'admin' ? JSON.stringify({ id: 'g9', url: node.url }) : batch, headers: type === undefined ? {} : { 'content-type': type } })
      t.equal(res.status, 415, `${what} with ${type ?? 'no'} Content-Type: 415`)
    }
  }
  t.equal((await c.http.get(c.routerUrl, 'lim/form')).status, 404, 'no refused batch wrote anything')
  t.equal((await c.http.getJson<{ groups: unknown[] }>(c.routerUrl + CLUSTER_PATH)).groups.length, 1, 'no refused admin call added a group')

  // An admin call names a URL the router connects to: nothing that address answers is relayed.
  const stranger = createServer((_req, res) => { res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal","message":"SECRET-from-the-stranger"}') })
  await new Promise<void>((resolve) => stranger.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { stranger.close() })
  const strangerUrl = `http://127.0.0.1:${(stranger.address() as AddressInfo).port}`
  for (const [what, url, body] of [
    ['add a group', c.routerUrl + ADMIN.groups, { id: 'g9', url: strangerUrl }],
    ['add a replica', `${c.routerUrl}${ADMIN.groups}/g1/replicas`, { url: strangerUrl }]
  ] as const) {
    const res = await c.http.request('POST', url, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    t.equal(res.status, 400, `${what} at a non-shardkv address: 400`)
    t.notMatch(res.text(), /SECRET/, `${what}: nothing the address answered is relayed (${res.text().slice(0, 160)})`)
  }
  t.equal((await c.http.getJson<{ groups: Array<{ nodes: unknown[] }> }>(c.routerUrl + CLUSTER_PATH)).groups[0]?.nodes.length, 1, 'the map did not change')

  const pidsAfter = await c.pids()
  t.same([...pidsAfter], [...pidsBefore], 'the same processes serve: nothing crashed')
  for (const pids of pidsAfter.values()) for (const pid of pids) t.ok(isAlive(pid), `pid ${pid} alive`)
})
