import t from 'tap'
import { startCluster } from '../harness/cluster'
import { concurrentRounds } from '../harness/batch'
import type { HttpClient, HttpResponse } from '../harness/http'
import { newRequestId } from '../../src/protocol/request-id'
import { HEADER } from '../../src/protocol/wire'

/**
 * The router sends concurrent unconditional PUTs and DELETEs upstream as one batch per
 * primary (router/write-coalescer.ts), each op carrying its request id. That must change
 * nothing a client sees: a coalesced write answers what a write sent alone answers, and a
 * write retried with its request id after a coalesced attempt applies once.
 */

const ANSWER_HEADERS = ['content-type', 'x-shardkv-node', 'x-content-type-options']
const ROUNDS = 3
const WIDTH = 24

function shape (res: HttpResponse): { status: number, headers: Record<string, string | undefined>, bodyIsVersion: boolean } {
  const headers: Record<string, string | undefined> = {}
  for (const h of ANSWER_HEADERS) headers[h] = res.header(h)
  const etag = res.header('etag')
  const bodyIsVersion = res.body.length === 0
    ? etag === undefined
    : etag !== undefined && res.text() === JSON.stringify({ version: etag.slice(1, -1) }) && res.header('content-length') === String(res.body.length)
  return { status: res.status, headers, bodyIsVersion }
}

async function coalescedWrites (http: HttpClient, routerUrl: string): Promise<number> {
  const text = (await http.request('GET', `${routerUrl}/metrics`)).text()
  return Number(/shardkv_router_batch_upstream_requests_total\{path="coalesced_writes"\} (\d+)/.exec(text)?.[1] ?? 0)
}

const together = async <T>(call: (i: number) => Promise<T>): Promise<T[]> => await concurrentRounds(ROUNDS, WIDTH, call)

t.test('a coalesced write answers exactly what a write sent alone answers', async (t) => {
  const c = await startCluster(t, { name: 'wcoalesce', groups: 2, replicas: 1 })
  const h = c.http
  const r = c.routerUrl
  const node = (res: HttpResponse): string | undefined => res.header('x-shardkv-node')

  // Alone: one write at a time, never coalesced.
  const alone = {
    created: shape(await h.put(r, 'wc/alone', 'one', { 'content-type': 'text/plain' })),
    replaced: shape(await h.put(r, 'wc/alone', 'two', { 'content-type': 'text/plain' })),
    deleted: shape(await h.del(r, 'wc/alone'))
  }
  t.same([alone.created.status, alone.replaced.status, alone.deleted.status], [201, 200, 204], 'alone: 201, 200, 204')
  const before = await coalescedWrites(h, r)

  const key = (i: number): string => `wc/k${i}`
  const value = (i: number, v: string): string => `${v}-${i}-${'x'.repeat(i % 50)}`
  const created = await together(async (i) => await h.put(r, key(i), value(i, 'one'), { 'content-type': 'text/plain' }))
  const replaced = await together(async (i) => await h.put(r, key(i), value(i, 'two'), { 'content-type': 'text/plain' }))
  const after = await coalescedWrites(h, r)
  t.ok(after - before >= 1, `the router sent coalesced batches (${after - before}) for ${2 * ROUNDS * WIDTH} concurrent PUTs`)

  const differ = (answers: HttpResponse[], want: ReturnType<typeof shape>): string[] => answers
    .map((res, i) => ({ i, got: shape(res), wantNode: want.headers['x-shardkv-node'] === undefined ? undefined : node(res) }))
    .filter(({ got }) => JSON.stringify({ ...got, headers: { ...got.headers, 'x-shardkv-node': undefined } }) !== JSON.stringify({ ...want, headers: { ...want.headers, 'x-shardkv-node': undefined } }))
    .map(({ i, got }) => `${key(i)}: ${JSON.stringify(got)} vs alone ${JSON.stringify(want)}`)
  t.same(differ(created, alone.created).slice(0, 3), [], 'every concurrent create answers as a lone create (201, ETag, {"version"})')
  t.same(differ(replaced, alone.replaced).slice(0, 3), [], 'every concurrent replace answers as a lone replace (200)')
  t.ok(created.every((res) => node(res) !== undefined), 'every answer names its node')

  const reads = await Promise.all(created.map(async (_, i) => await h.get(r, key(i))))
  t.same(reads.map((res) => res.text()).filter((text, i) => text !== value(i, 'two')), [], 'every key reads its last value')
  t.same(reads.map((res) => res.header('etag')).filter((etag, i) => etag !== replaced[i]?.header('etag')), [], 'with the ETag its PUT answered')

  const deleted = await together(async (i) => await h.del(r, key(i)))
  t.same(differ(deleted, alone.deleted).slice(0, 3), [], 'every concurrent DELETE answers as a lone one (204, no body)')
  const gone = await Promise.all(deleted.map(async (_, i) => (await h.get(r, key(i))).status))
  t.same(gone.filter((s) => s !== 404), [], 'every deleted key is a 404')
})

t.test('a coalesced write retried with its request id applies once', async (t) => {
  const c = await startCluster(t, { name: 'wcoalesce-once', groups: 2, replicas: 1 })
  const h = c.http
  const r = c.routerUrl
  const ids = Array.from({ length: ROUNDS * WIDTH }, () => newRequestId())
  const put = async (i: number, v: string): Promise<HttpResponse> => await h.put(r, `once/${i}`, `${v}${i}`, { [HEADER.requestId]: ids[i] as string })
  const before = await coalescedWrites(h, r)
  const first = await together(async (i) => await put(i, 'a'))
  t.ok(await coalescedWrites(h, r) - before >= 1, 'the first attempts were coalesced')
  t.same(first.map((res) => res.status).filter((s) => s !== 201), [], 'all created')

  // The client's retries, one at a time (alone): the node answers each as its first attempt.
  const retried: string[] = []
  for (let i = 0; i < ids.length; i++) {
    const again = await put(i, 'a')
    if (again.status !== 201 || again.header('etag') !== first[i]?.header('etag')) retried.push(`once/${i}: ${again.status} ${again.header('etag') ?? ''} vs ${first[i]?.header('etag') ?? ''}`)
  }
  t.same(retried.slice(0, 3), [], 'every retry is answered with the first outcome (same status and ETag)')
  const reused = await put(0, 'b')
  t.equal(reused.status, 422, 'the id with another value is a reuse')
  t.equal(reused.json().error, 'idempotency_key_reused')
  const now = await Promise.all(ids.map(async (_, i) => await h.get(r, `once/${i}`)))
  t.same(now.map((res, i) => res.header('etag') === first[i]?.header('etag') && res.text() === `a${i}`).filter((ok) => !ok), [], 'every key holds its first write, applied once')
})
