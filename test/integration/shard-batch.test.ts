import t from 'tap'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { newRequestId } from '../../src/protocol/request-id'
import { startCluster, type TestCluster, type ClusterNode } from '../harness/cluster'
import { allReplicasInSync } from '../harness/cluster-view'
import type { HttpResponse } from '../harness/http'
import { GroupRing } from '../../src/ring/ring'
import { BATCH_PATH, HEADER } from '../../src/protocol/wire'

/**
 * POST /batch straight to a shard node (no router in the path): per-op results, the
 * limits (nothing applied when refused), replay by request id, and a batch's writes
 * committing together (all of them read back after SIGKILL of the whole node right
 * after the ack). Shard nodes run with synchronous=FULL and the default group commit.
 */

const MAX_OPS = 300
const MAX_BYTES = 64 * 1024

interface Result { status: number, etag?: string, contentType?: string, value?: string, tombstone?: boolean, error?: string, message?: string, current?: string | null, epoch?: number, map?: unknown }
interface BatchAnswer { results: Result[], map?: { epoch: number } }


async function ownerRing (c: TestCluster): Promise<GroupRing> {
  const view = await c.http.getJson<ClusterView>(`${c.routerUrl}/cluster`)
  return new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
}

function b64 (s: string): string {
  return Buffer.from(s).toString('base64')
}

async function postBatch (c: TestCluster, node: ClusterNode, body: unknown, headers: Record<string, string> = {}): Promise<HttpResponse> {
  return await c.http.request('POST', node.url + BATCH_PATH, {
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers }
  })
}

async function batch (t: tap.Test, c: TestCluster, node: ClusterNode, ops: unknown[], headers: Record<string, string> = {}): Promise<BatchAnswer> {
  const res = await postBatch(c, node, { ops }, headers)
  t.equal(res.status, 200, `batch of ${ops.length} answered 200 (${res.status === 200 ? '' : res.text().slice(0, 200)})`)
  return res.json<BatchAnswer>()
}

t.test('POST /batch on a shard node', async (t) => {
  const c = await startCluster(t, {
    name: 'shard-batch',
    groups: 2,
    workers: 2,
    synchronous: 'FULL',
    shardArgs: ['--max-batch-ops', String(MAX_OPS), '--max-batch-bytes', String(MAX_BYTES)]
  })
  const { http } = c
  const ring = await ownerRing(c)
  const node = c.primaries[0]!
  let n = 0
  /** A fresh key owned by `group`. */
  const keyOf = (group: string, prefix: string): string => {
    for (;;) {
      const k = `${prefix}/${n++}`
      if (ring.ownerOf(k) === group) return k
    }
  }
  const own = (prefix: string): string => keyOf(node.group, prefix)

  t.test('mixed results, in op order', async (t) => {
    const hit = own('hit')
    const tomb = own('tomb')
    const rep = own('rep')
    const cond = own('cond')
    const doomed = own('doomed')
    const fresh = own('fresh')
    const miss = own('miss')
    const foreign = keyOf(c.primaries[1]!.group, 'foreign')
    const seed = async (k: string, v: string): Promise<string> => {
      const res = await http.put(node.url, k, v, { 'content-type': 'text/plain' })
      t.equal(res.status, 201, `seed ${k}`)
      return res.header('etag') ?? ''
    }
    const hitEtag = await seed(hit, 'hit value')
    await seed(tomb, 'soon gone')
    t.equal((await http.del(node.url, tomb)).status, 204)
    await seed(rep, 'old')
    const condEtag = await seed(cond, 'guarded')
    await seed(doomed, 'delete me')

    const a = await batch(t, c, node, [
      { op: 'get', key: hit },
      { op: 'get', key: miss },
      { op: 'get', key: tomb },
      { op: 'put', key: fresh, value: b64('fresh value'), contentType: 'text/x-fresh' },
      { op: 'get', key: fresh },
      { op: 'put', key: rep, value: b64('new') },
      { op: 'delete', key: doomed },
      { op: 'get', key: doomed },
      { op: 'put', key: cond, value: b64('nope'), ifMatch: '"not-the-version"' },
      { op: 'put', key: hit, value: b64('nope'), ifNoneMatch: '*' },
      { op: 'get', key: foreign },
      { op: 'put', key: foreign, value: b64('nope') },
      { op: 'put', key: cond, value: b64('guarded 2'), ifMatch: condEtag }
    ])
    const r = a.results
    t.equal(r.length, 13)
    t.same(r[0], { status: 200, etag: hitEtag, contentType: 'text/plain', value: b64('hit value') }, 'get hit')
    t.match(r[1], { status: 404, error: 'not_found' }, 'get miss')
    t.notOk(r[1]?.tombstone, 'a miss is not a tombstone')
    t.match(r[2], { status: 404, error: 'not_found', tombstone: true }, 'get of a deleted key: 404 with tombstone')
    t.equal(r[3]?.status, 201, 'put creates')
    t.match(r[3]?.etag, /^".+"$/)
    t.same(r[4], { status: 200, etag: r[3]?.etag, contentType: 'text/x-fresh', value: b64('fresh value') }, 'a get after a put in the same batch sees it')
    t.equal(r[5]?.status, 200, 'put replaces')
    t.same(r[6], { status: 204 }, 'delete')
    t.match(r[7], { status: 404, tombstone: true }, 'a get after a delete in the same batch sees it')
    t.match(r[8], { status: 412, error: 'precondition_failed', current: condEtag }, 'If-Match failure with the current etag')
    t.match(r[9], { status: 412, error: 'precondition_failed', current: hitEtag }, 'If-None-Match * on an existing key')
    for (const i of [10, 11]) {
      t.match(r[i], { status: 421, error: 'misdirected', epoch: Number }, `op ${i} on a key of another group: 421`)
      t.equal(r[i]?.map, undefined, 'no map per op')
    }
    t.equal(r[12]?.status, 200, 'a conditional put after a failed one on the same key, with the right etag, applies')
    t.ok(a.map !== undefined && typeof a.map.epoch === 'number', 'the installed map once, at the top level')

    // What the batch did is what single reads see.
    t.equal((await http.get(node.url, fresh)).text(), 'fresh value')
    t.equal((await http.get(node.url, fresh)).header('content-type'), 'text/x-fresh')
    t.equal((await http.get(node.url, rep)).text(), 'new')
    t.equal((await http.get(node.url, doomed)).status, 404)
    t.equal((await http.get(node.url, doomed)).header(HEADER.tombstone), '1')
    t.equal((await http.get(node.url, hit)).text(), 'hit value', 'refused writes changed nothing')
    t.equal((await http.get(node.url, cond)).text(), 'guarded 2')
    t.equal((await http.get(c.primaries[1]!.url, foreign)).status, 404, 'nothing was written for the misdirected put')

    const clean = await batch(t, c, node, [{ op: 'get', key: hit }, { op: 'get', key: miss }])
    t.equal(clean.map, undefined, 'no map when nothing was misdirected')
    t.same(clean.results.map((x) => x.status), [200, 404], 'a gets-only batch')
  })

  t.test('limits and malformed input: 4xx, nothing applied', async (t) => {
    const probe = own('limits')
    const before = (await c.health(node)).position
    const put = { op: 'put', key: probe, value: b64('must not be written') }
    const cases: Array<{ what: string, body: unknown, headers?: Record<string, string>, status: number, code: string }> = [
      { what: 'too many ops', body: { ops: Array.from({ length: MAX_OPS + 1 }, () => put) }, status: 413, code: 'batch_too_large' },
      { what: 'body over the byte limit', body: { ops: [put, { op: 'put', key: own('big'), value: 'A'.repeat(MAX_BYTES) }] }, status: 413, code: 'batch_too_large' },
      { what: 'malformed JSON', body: '{"ops": [', status: 400, code: 'invalid_request' },
      { what: 'empty body', body: '', status: 400, code: 'invalid_request' },
      { what: 'not an object', body: '[1,2]', status: 400, code: 'invalid_request' },
      { what: 'no ops', body: { ops: [] }, status: 400, code: 'invalid_request' },
      { what: 'an unknown op after a valid one', body: { ops: [put, { op: 'frob', key: probe }] }, status: 400, code: 'invalid_request' },
      { what: 'a bad key after a valid op', body: { ops: [put, { op: 'get', key: '' }] }, status: 400, code: 'invalid_key' },
      { what: 'a value that is not base64', body: { ops: [put, { op: 'put', key: probe, value: '***' }] }, status: 400, code: 'invalid_request' },
      { what: 'a malformed ifMatch', body: { ops: [put, { op: 'put', key: probe, value: '', ifMatch: 'x' }] }, status: 400, code: 'invalid_header' },
      { what: 'a bad rid', body: { ops: [{ ...put, rid: 'no spaces allowed' }] }, status: 400, code: 'invalid_request' },
      { what: 'a bad request-id header', body: { ops: [put] }, headers: { [HEADER.requestId]: 'bad id!' }, status: 400, code: 'invalid_header' },
      { what: 'a bad epoch header', body: { ops: [put] }, headers: { [HEADER.epoch]: '-1' }, status: 400, code: 'invalid_header' }
    ]
    for (const k of cases) {
      const res = await postBatch(c, node, k.body, k.headers)
      t.equal(res.status, k.status, `${k.what}: ${k.status} (${res.text().slice(0, 120)})`)
      const body = res.json<{ error?: string, message?: string }>()
      t.equal(body.error, k.code, `${k.what}: ${k.code}`)
      t.ok(typeof body.message === 'string' && body.message.length > 0, `${k.what}: has a message`)
    }
    t.equal((await http.get(node.url, probe)).status, 404, 'the valid op of a refused batch was not applied')
    t.equal((await c.health(node)).position, before, 'nothing at all was written')
    t.equal((await http.get(node.url, probe)).status, 404)
  })

  t.test('a replayed batch is answered as the first time, not applied again', async (t) => {
    const a = own('replay-a')
    const b = own('replay-b')
    const d = own('replay-d')
    const rb1 = newRequestId()
    await http.put(node.url, d, 'to delete')
    const ops = [
      { op: 'put', key: a, value: b64('A1'), ifNoneMatch: '*', rid: `${rb1}-0` },
      { op: 'put', key: b, value: b64('B1'), rid: `${rb1}-1` },
      { op: 'delete', key: d, ifMatch: '*', rid: `${rb1}-2` }
    ]
    const first = await batch(t, c, node, ops)
    t.same(first.results.map((x) => x.status), [201, 201, 204])
    const pos = (await c.health(node)).position
    const again = await batch(t, c, node, ops)
    t.same(again.results, first.results, 'same statuses and etags (If-None-Match: * does not fail on its own write)')
    t.equal((await c.health(node)).position, pos, 'nothing written again')

    // Without rids, the header's request id names each write as <id>-<index>.
    const e = own('replay-e')
    const hdr = { [HEADER.requestId]: newRequestId() }
    const h1 = await batch(t, c, node, [{ op: 'get', key: e }, { op: 'put', key: e, value: b64('E1'), ifNoneMatch: '*' }], hdr)
    t.same(h1.results.map((x) => x.status), [404, 201])
    const pos2 = (await c.health(node)).position
    const h2 = await batch(t, c, node, [{ op: 'get', key: e }, { op: 'put', key: e, value: b64('E1'), ifNoneMatch: '*' }], hdr)
    t.equal(h2.results[1]?.status, 201, 'the retried put is recognised')
    t.equal(h2.results[1]?.etag, h1.results[1]?.etag)
    t.equal(h2.results[0]?.status, 200, 'the get reads the current value')
    t.equal((await c.health(node)).position, pos2, 'nothing written again')
    const h3 = await batch(t, c, node, [{ op: 'put', key: e, value: b64('E1'), ifNoneMatch: '*' }], hdr)
    t.equal(h3.results[0]?.status, 412, 'another index under the same request id is another write')
  })

  t.test('the answer carries at most max-batch-bytes of values; the rest are 413 per op', async (t) => {
    const raw = Buffer.alloc(20_000, 'b')
    const big = raw.toString('base64') // ~26.7 KB of base64 each
    const keys = [own('cap-0'), own('cap-1'), own('cap-2'), own('cap-3')]
    for (const key of keys) t.equal((await http.put(node.url, key, raw)).status, 201)
    const r = await batch(t, c, node, keys.map((key) => ({ op: 'get', key })))
    t.same(r.results.map((x) => x.status), [200, 200, 413, 413], `two values fit in ${MAX_BYTES} bytes, the rest are refused`)
    t.equal(r.results[0]?.value, big, 'the values that fit are whole')
    t.equal(r.results[2]?.error, 'batch_too_large')
    t.equal((await http.get(node.url, keys[3]!)).status, 200, 'a refused key reads alone')
  })

  t.test('the node counts a batch\'s ops by kind', async (t) => {
    const counters = async (): Promise<Record<string, number>> => {
      const text = (await http.request('GET', `${node.url}/metrics`)).text()
      const read = (series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
      return {
        batches: read('shardkv_shard_batches_total'),
        get: read('shardkv_shard_batch_ops_total{op="get"}'),
        put: read('shardkv_shard_batch_ops_total{op="put"}'),
        delete: read('shardkv_shard_batch_ops_total{op="delete"}'),
        reads: read('shardkv_shard_reads_total'),
        writes: read('shardkv_shard_writes_total')
      }
    }
    const before = await counters()
    const keys = [own('count-0'), own('count-1'), own('count-2')]
    await batch(t, c, node, [
      { op: 'put', key: keys[0], value: b64('a') }, { op: 'put', key: keys[1], value: b64('b') },
      { op: 'get', key: keys[0] }, { op: 'get', key: keys[1] }, { op: 'get', key: keys[2] },
      { op: 'delete', key: keys[1] }
    ])
    const after = await counters()
    const delta = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]))
    t.same(delta, { batches: 1, get: 3, put: 2, delete: 1, reads: 3, writes: 3 }, 'one batch: 3 gets, 2 puts, 1 delete')
  })

  t.test('a batch\'s writes survive SIGKILL of the whole node right after the ack', async (t) => {
    const keys = Array.from({ length: 200 }, () => own('atomic'))
    const gone = own('atomic-gone')
    await http.put(node.url, gone, 'present before')
    const ops = [
      ...keys.map((k, i) => ({ op: 'put', key: k, value: b64(`value ${i} of ${k}`), contentType: 'text/plain' })),
      { op: 'delete', key: gone }
    ]
    const res = await batch(t, c, node, ops)
    t.ok(res.results.slice(0, 200).every((r) => r.status === 201), 'all puts created')
    t.same(res.results[200], { status: 204 })
    // One transaction: the batch's writes took consecutive seqs (the last part of the version).
    const seqs = res.results.slice(0, 200).map((r) => parseInt((r.etag ?? '').replace(/"/g, '').split('.')[2] ?? '', 36))
    t.ok(seqs.every((s, i) => i === 0 || s === (seqs[i - 1] as number) + 1), 'consecutive seqs: nothing interleaved')

    await c.killHard(node)
    await c.restart(node)
    const check = await batch(t, c, node, [...keys.map((key) => ({ op: 'get', key })), { op: 'get', key: gone }])
    const bad = check.results.slice(0, 200).flatMap((r, i) =>
      r.status === 200 && r.etag === res.results[i]?.etag && r.value === b64(`value ${i} of ${keys[i]!}`) ? [] : [`${keys[i]!}: ${JSON.stringify(r).slice(0, 100)}`])
    t.same(bad, [], 'every acknowledged write reads back with its acknowledged etag')
    t.match(check.results[200], { status: 404, tombstone: true }, 'the delete survived too')
  })
})

t.test('POST /batch in a replicated group: only the primary serves; the ack waits for the replica', async (t) => {
  const rc = await startCluster(t, { name: 'shard-batch-repl', groups: 1, replicas: 1 })
  await rc.waitForView(allReplicasInSync, 'the replica in sync')
  const primary = rc.nodes.find((x) => x.name === 'g1')!
  const replica = rc.nodes.find((x) => x.name === 'g1-r1')!
  const post = async (url: string, ops: unknown[]): Promise<HttpResponse> => await rc.box.http.request('POST', url + BATCH_PATH, {
    body: JSON.stringify({ ops }), headers: { 'content-type': 'application/json' }
  })

  const ops = Array.from({ length: 50 }, (_, i) => ({ op: 'put', key: `repl/${i}`, value: b64(`v${i}`) }))
  // A primary with a replica serves only under the coordinator's lease, renewed four times
  // per --lease-ms: right after the replica joined, the first renewal may be pending.
  let res = await post(primary.url, ops)
  for (const deadline = Date.now() + 5000; res.status === 421 && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    res = await post(primary.url, ops)
  }
  t.equal(res.status, 200, `the primary serves the batch (${res.status === 200 ? '' : res.text().slice(0, 200)})`)
  const results = res.json<BatchAnswer>().results
  t.ok(results.every((r) => r.status === 201), 'all created')
  const maxSeq = Math.max(...results.map((r) => parseInt((r.etag ?? '').replace(/"/g, '').split('.')[2] ?? '0', 36)))
  const replicaPosition = (await rc.health(replica)).position
  t.ok(replicaPosition >= maxSeq, `at the ack the replica already has seq ${maxSeq} (it is at ${replicaPosition})`)

  const refused = await post(replica.url, [{ op: 'get', key: 'repl/1' }, ...ops.slice(0, 2)])
  t.equal(refused.status, 421, 'a replica refuses the whole batch')
  t.match(refused.json(), { error: 'misdirected', epoch: Number })
  const before = (await rc.health(replica)).position
  t.equal(before, replicaPosition, 'and writes nothing')

  // With the replica frozen, the ack must wait: until the primary has the replica
  // dropped from the in-sync set (after --replica-timeout-ms) or gives up (503).
  const h = await rc.health(replica)
  const frozen = [h.pid, ...h.workerPids]
  const signal = (sig: NodeJS.Signals): void => { for (const pid of frozen) { try { process.kill(pid, sig) } catch { /* gone */ } } }
  t.teardown(() => signal('SIGCONT'))
  signal('SIGSTOP')
  const started = Date.now()
  const slow = await post(primary.url, [{ op: 'put', key: 'repl/frozen', value: b64('f') }])
  const waited = Date.now() - started
  signal('SIGCONT')
  t.ok(slow.status === 503 || (slow.status === 200 && waited >= 800), `not acknowledged before the frozen replica was dealt with: ${slow.status} after ${waited} ms`)
})
