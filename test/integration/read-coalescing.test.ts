import t from 'tap'
import { startCluster } from '../harness/cluster'
import type { HttpResponse } from '../harness/http'
import { LoadGenerator, formatStats } from '../harness/history'
import { checkClientHistory } from '../harness/client-load'
import { createClient, KvError } from '../../src/client'

/**
 * The router sends concurrent plain GETs upstream as one batch per primary
 * (router/read-coalescer.ts). That must change nothing a client sees: a coalesced GET
 * answers byte for byte what a GET sent alone answers — status, body, Content-Type,
 * ETag, Content-Length, node — for values of every shape and for absent and deleted keys.
 */

const ANSWER_HEADERS = ['content-type', 'content-length', 'etag', 'x-shardkv-node', 'x-shardkv-tombstone']

function shape (res: HttpResponse): { status: number, headers: Record<string, string | undefined>, body: string } {
  const headers: Record<string, string | undefined> = {}
  for (const h of ANSWER_HEADERS) headers[h] = res.header(h)
  return { status: res.status, headers, body: res.body.toString('base64') }
}

async function coalescedCount (get: (url: string) => Promise<HttpResponse>, routerUrl: string): Promise<number> {
  const text = (await get(`${routerUrl}/metrics`)).text()
  return Number(/shardkv_router_batch_upstream_requests_total\{path="coalesced"\} (\d+)/.exec(text)?.[1] ?? 0)
}

t.test('a coalesced GET answers exactly what a GET sent alone answers', async (t) => {
  const c = await startCluster(t, { name: 'coalesce', groups: 2, workers: 1 })
  const kv = (key: string): string => `${c.routerUrl}/kv/${encodeURIComponent(key)}`
  const get = async (url: string): Promise<HttpResponse> => await c.http.request('GET', url)

  const binary = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) % 256))
  const cases: Array<{ key: string, body?: Buffer, type?: string }> = [
    { key: 'co/text', body: Buffer.from('héllo wörld'), type: 'text/plain; charset=utf-8' },
    { key: 'co/binary', body: binary, type: 'application/octet-stream' },
    { key: 'co/json', body: Buffer.from('{"a":1}'), type: 'application/json' },
    { key: 'co/empty', body: Buffer.alloc(0), type: 'text/plain' },
    { key: 'co/untyped', body: Buffer.from('no type given') },
    { key: 'co/unicode-ключ ☃/and space' , body: Buffer.from('u'), type: 'text/plain' },
    { key: 'co/deleted', body: Buffer.from('gone soon'), type: 'text/plain' },
    { key: 'co/never-written' }
  ]
  for (const k of cases) {
    if (k.body === undefined) continue
    const headers: Record<string, string> = k.type === undefined ? {} : { 'content-type': k.type }
    const res = await c.http.request('PUT', kv(k.key), { body: k.body, headers })
    t.ok(res.status === 201, `PUT ${k.key}: ${res.status}`)
  }
  t.equal((await c.http.request('DELETE', kv('co/deleted'))).status, 204, 'deleted one key (a tombstone)')

  // Alone: one GET at a time, never coalesced.
  const alone = new Map<string, ReturnType<typeof shape>>()
  for (const k of cases) alone.set(k.key, shape(await get(kv(k.key))))
  const before = await coalescedCount(get, c.routerUrl)

  // Together: every key many times at once, so the router coalesces them.
  const rounds = 12
  const together = await Promise.all(Array.from({ length: rounds }, async () => await Promise.all(cases.map(async (k) => ({ key: k.key, res: shape(await get(kv(k.key))) })))))
  const after = await coalescedCount(get, c.routerUrl)
  t.ok(after - before >= 1, `the router sent coalesced batches (${after - before}) for ${rounds * cases.length} concurrent GETs`)

  const differ: string[] = []
  for (const round of together) {
    for (const { key, res } of round) {
      if (JSON.stringify(res) !== JSON.stringify(alone.get(key))) differ.push(`${key}: alone ${JSON.stringify(alone.get(key))} vs together ${JSON.stringify(res)}`)
    }
  }
  t.same(differ.slice(0, 5), [], `every concurrent answer equals the lone answer (${differ.length} differ)`)
  t.equal(alone.get('co/never-written')?.status, 404, 'the absent key is a 404')
  t.equal(alone.get('co/deleted')?.status, 404, 'the deleted key is a 404')
  t.equal(Buffer.from(alone.get('co/binary')?.body ?? '', 'base64').equals(binary), true, 'binary bytes round-trip')
})

t.test('coalesced reads under a concurrent read/write load: no stale read, nothing lost', async (t) => {
  const c = await startCluster(t, { name: 'coalesce-load', groups: 3, workers: 2 })
  const get = async (url: string): Promise<HttpResponse> => await c.http.request('GET', url)
  const before = await coalescedCount(get, c.routerUrl)
  // Mostly reads of few keys: many GETs of a key are in flight while it is written.
  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 24, keysPerClient: 4, durationMs: 6_000, maxOpsPerClient: 20_000, mix: { put: 3, get: 6, delete: 1 } })
  const stats = await load.run()
  t.comment(`load: ${formatStats(stats)}`)
  t.equal(stats.failedRequests, 0, 'no request failed')
  const coalesced = (await coalescedCount(get, c.routerUrl)) - before
  t.ok(coalesced > 0, `GETs were coalesced (${coalesced} upstream batches)`)
  const report = await load.verify()
  t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
  t.ok(report.ok, `history checks out: ${JSON.stringify(report.counts)}\n${report.text}`)
})

t.test('the direct client coalesces concurrent gets per primary; each answers as it would alone', async (t) => {
  const c = await startCluster(t, { name: 'coalesce-client', groups: 2, workers: 1 })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  const alone = createClient({ url: c.routerUrl, mode: 'direct', readCoalesceMaxKeys: 1 })
  t.teardown(async () => { await kv.close(); await alone.close() })
  const keys = Array.from({ length: 40 }, (_, i) => `cc/${i}`)
  for (const [i, key] of keys.entries()) {
    if (i % 4 === 3) continue // absent keys
    await kv.put(key, Buffer.from(`value ${i} ☃`), { contentType: i % 2 === 0 ? 'text/plain; charset=utf-8' : 'application/octet-stream' })
  }
  await kv.delete(keys[0] as string)
  const describe = (r: unknown): unknown => r instanceof KvError ? { error: r.code, status: r.status, message: r.message } : r
  const settle = async (client: typeof kv, key: string): Promise<unknown> => describe(await client.get(key).catch((err: unknown) => err))

  const expected: unknown[] = []
  for (const key of keys) expected.push(await settle(alone, key))
  const nodeRequestsBefore = Object.values(kv.stats().requests).reduce((a, b) => a + b, 0)
  const rounds = 5
  const together = await Promise.all(Array.from({ length: rounds }, async () => await Promise.all(keys.map(async (key) => await settle(kv, key)))))
  const sent = Object.values(kv.stats().requests).reduce((a, b) => a + b, 0) - nodeRequestsBefore
  t.ok(sent < rounds * keys.length / 4, `${rounds * keys.length} concurrent gets took ${sent} requests`)
  const differ = together.flatMap((round) => round.map((r, i) => JSON.stringify(r) === JSON.stringify(expected[i]) ? undefined : `${keys[i] ?? ''}: ${JSON.stringify(r)} vs ${JSON.stringify(expected[i])}`)).filter((d) => d !== undefined)
  t.same(differ.slice(0, 5), [], `every coalesced get equals the get sent alone (${differ.length} differ)`)
  t.equal((expected[0] as { status?: number }).status, 404, 'a deleted key is not found')
  t.equal((expected[3] as { status?: number }).status, 404, 'an absent key is not found')

  // A read/write history through the coalescing client.
  const reader = createClient({ url: c.routerUrl, mode: 'routed' })
  t.teardown(async () => { await reader.close() })
  await checkClientHistory(t, kv, reader)
})
