import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startCluster } from '../harness/cluster'
import { clusterView, ringOf } from '../harness/rebalance'
import { b64, keysByGroup, postBatch, runBatch, type WireOp, type WireResult } from '../harness/batch'

/**
 * POST /batch through a router over three single-node groups (issue 5): per-op results
 * across groups in the client's order, byte-exact values, refusals that change nothing,
 * and a group whose node is down failing only its own ops.
 */

const RETRY_MS = 1500

t.test('router POST /batch', async (t) => {
  const c = await startCluster(t, {
    name: 'rbatch',
    groups: 3,
    workers: 1,
    routerArgs: ['--retry-timeout-ms', String(RETRY_MS), '--max-batch-ops', '50', '--max-batch-bytes', '32768', '--max-value-bytes', '4096']
  })
  const view = await clusterView(c.http, c.routerUrl)
  const ring = ringOf(view)
  const byGroup = keysByGroup(view, 'bt/', 6)
  const k = (group: string, i: number): string => byGroup.get(group)?.[i] as string

  await t.test('mixed results across groups, in order', async (t) => {
    // Existing state, written through the single-key API.
    const etags = new Map<string, string>()
    for (const g of ['g1', 'g2', 'g3']) {
      for (const i of [0, 1, 2]) {
        const res = await c.http.put(c.routerUrl, k(g, i), `old ${g}/${i}`, { 'content-type': 'text/plain' })
        t.equal(res.status, 201, `seed ${k(g, i)}`)
        etags.set(k(g, i), res.header('etag') as string)
      }
    }
    const binary = Buffer.concat([Buffer.from([0, 255, 254, 0, 10, 13]), randomBytes(600)])
    const odd = ['ünï cødé ✓ 日本', 'a/b c', ' lead and trail ', '%41 literally', '__proto__']
    const ops: WireOp[] = [
      { op: 'get', key: k('g1', 0) }, // 0 hit
      { op: 'get', key: k('g2', 3) }, // 1 miss
      { op: 'put', key: k('g3', 3), value: b64('new g3'), contentType: 'text/plain' }, // 2 created
      { op: 'put', key: k('g1', 1), value: b64('replaced g1') }, // 3 replaced
      { op: 'delete', key: k('g2', 0) }, // 4 delete
      { op: 'put', key: k('g3', 0), value: b64('nope'), ifMatch: '"stale.1.1"' }, // 5 412 with current
      { op: 'put', key: k('g2', 4), value: b64('created if absent'), ifNoneMatch: '*' }, // 6 201
      { op: 'put', key: k('g1', 2), value: b64('nope'), ifNoneMatch: '*' }, // 7 412
      { op: 'put', key: k('g3', 4), value: b64(binary), contentType: 'image/png' }, // 8 binary
      { op: 'put', key: k('g2', 1), value: b64('matched'), ifMatch: etags.get(k('g2', 1)) }, // 9 conditional ok
      { op: 'delete', key: k('g3', 1), ifMatch: '"wrong.1.1"' }, // 10 412
      { op: 'get', key: k('g3', 2) }, // 11 hit
      ...odd.map((key): WireOp => ({ op: 'put', key, value: b64(`v:${key}`), contentType: 'text/plain; charset=utf-8' })) // 12..
    ]
    const groups = new Set(ops.map((o) => ring.ownerOf(o.key)))
    t.same([...groups].sort(), ['g1', 'g2', 'g3'], 'the batch spans all three groups')

    const started = Date.now()
    const r = await runBatch(c.http, c.routerUrl, ops)
    t.comment(`${ops.length} ops in ${Date.now() - started} ms`)
    t.match(r[0], { status: 200, etag: etags.get(k('g1', 0)), contentType: 'text/plain', value: b64('old g1/0') }, 'get of an existing key')
    t.match(r[1], { status: 404, error: 'not_found' }, 'get of an absent key')
    t.notOk('tombstone' in (r[1] as object), 'no shard-internal fields in a result')
    t.match(r[2], { status: 201, etag: /^".+"$/ }, 'put of a new key: created')
    t.match(r[3], { status: 200, etag: /^".+"$/ }, 'put of an existing key: replaced')
    t.not(r[3]?.etag, etags.get(k('g1', 1)), 'a new version')
    t.same(r[4], { status: 204 }, 'delete')
    t.match(r[5], { status: 412, error: 'precondition_failed', current: etags.get(k('g3', 0)) }, 'ifMatch on a stale etag: 412 with the current etag')
    t.match(r[6], { status: 201 }, 'ifNoneMatch * on an absent key: created')
    t.match(r[7], { status: 412, error: 'precondition_failed', current: etags.get(k('g1', 2)) }, 'ifNoneMatch * on an existing key: 412')
    t.match(r[8], { status: 201 }, 'binary put')
    t.match(r[9], { status: 200 }, 'ifMatch on the current etag: replaced')
    t.match(r[10], { status: 412, error: 'precondition_failed' }, 'conditional delete on a wrong etag: 412')
    t.match(r[11], { status: 200, value: b64('old g3/2') }, 'second hit, in its place')
    odd.forEach((key, j) => t.match(r[12 + j], { status: 201 }, `put of ${JSON.stringify(key)}`))
    for (const res of r) if (res.status >= 400) t.type(res.message, 'string', 'an error result has a message')

    // What the store holds now, read through the single-key API.
    const get = async (key: string): Promise<{ status: number, body: Buffer, type?: string, etag?: string }> => {
      const res = await c.http.get(c.routerUrl, key)
      return { status: res.status, body: res.body, type: res.header('content-type'), etag: res.header('etag') }
    }
    t.equal((await get(k('g3', 3))).body.toString(), 'new g3')
    t.equal((await get(k('g1', 1))).body.toString(), 'replaced g1')
    t.equal((await get(k('g1', 1))).etag, r[3]?.etag, 'the batch etag is the stored version')
    t.equal((await get(k('g2', 0))).status, 404, 'deleted')
    t.equal((await get(k('g3', 0))).body.toString(), 'old g3/0', 'a failed precondition changed nothing')
    t.equal((await get(k('g1', 2))).body.toString(), 'old g1/2', 'a failed ifNoneMatch changed nothing')
    t.equal((await get(k('g3', 1))).body.toString(), 'old g3/1', 'a failed conditional delete changed nothing')
    t.equal((await get(k('g2', 1))).body.toString(), 'matched')
    const bin = await get(k('g3', 4))
    t.ok(bin.body.equals(binary), 'the binary value reads back byte for byte through GET /kv')
    t.equal(bin.type, 'image/png', 'with its content type')
    for (const key of odd) t.equal((await get(key)).body.toString(), `v:${key}`, `${JSON.stringify(key)} reads back`)

    // And through a batch of gets, in order.
    const keys = [k('g3', 4), ...odd, k('g2', 0), k('g1', 1)]
    const back = await runBatch(c.http, c.routerUrl, keys.map((key) => ({ op: 'get', key })))
    t.ok(Buffer.from(back[0]?.value ?? '', 'base64').equals(binary), 'binary round-trips through batch get')
    t.equal(back[0]?.contentType, 'image/png')
    odd.forEach((key, j) => t.equal(Buffer.from(back[1 + j]?.value ?? '', 'base64').toString(), `v:${key}`, `batch get of ${JSON.stringify(key)}`))
    t.match(back[1 + odd.length], { status: 404 })
    t.equal(Buffer.from(back[2 + odd.length]?.value ?? '', 'base64').toString(), 'replaced g1')
  })

  await t.test('invalid batches are refused with a JSON 4xx and change nothing', async (t) => {
    const key = k('g1', 5)
    const fresh = k('g2', 5)
    t.equal((await c.http.put(c.routerUrl, key, 'orig')).status, 201)
    const good: WireOp[] = [{ op: 'put', key, value: b64('changed') }, { op: 'put', key: fresh, value: b64('new') }, { op: 'delete', key: k('g3', 5) }]
    const cases: Array<{ name: string, body: WireOp[] | string, status: number, error: string }> = [
      { name: 'too many ops', body: [...good, ...Array.from({ length: 48 }, (_, i): WireOp => ({ op: 'get', key: `x${i}` }))], status: 413, error: 'batch_too_large' },
      { name: 'body over --max-batch-bytes', body: [...good, ...Array.from({ length: 10 }, (_, i): WireOp => ({ op: 'put', key: `big${i}`, value: b64(Buffer.alloc(4000, 7)) }))], status: 413, error: 'batch_too_large' },
      { name: 'a value over --max-value-bytes', body: [...good, { op: 'put', key: 'huge', value: b64(Buffer.alloc(4097, 1)) }], status: 413, error: 'value_too_large' },
      { name: 'an empty key', body: [...good, { op: 'get', key: '' }], status: 400, error: 'invalid_key' },
      { name: 'a key over 1024 bytes', body: [...good, { op: 'get', key: 'é'.repeat(513) }], status: 400, error: 'invalid_key' },
      { name: 'a malformed ifMatch', body: [...good, { op: 'put', key: 'y', value: b64('v'), ifMatch: 'not-an-etag' }], status: 400, error: 'invalid_header' },
      { name: 'an unknown op', body: [...good, { op: 'increment', key: 'y' }], status: 400, error: 'invalid_request' },
      { name: 'a value that is not base64', body: [...good, { op: 'put', key: 'y', value: 'not base64!' }], status: 400, error: 'invalid_request' },
      { name: 'not JSON', body: '{"ops": [' + JSON.stringify(good[0]) + ',', status: 400, error: 'invalid_request' },
      { name: 'ops not an array', body: '{"ops": {"0": {"op": "get", "key": "a"}}}', status: 400, error: 'invalid_request' },
      { name: 'no ops', body: '{"ops": []}', status: 400, error: 'invalid_request' },
      { name: 'a JSON array', body: '[]', status: 400, error: 'invalid_request' },
      { name: 'an empty body', body: '', status: 400, error: 'invalid_request' }
    ]
    for (const cs of cases) {
      const res = await postBatch(c.http, c.routerUrl, cs.body)
      t.equal(res.status, cs.status, `${cs.name}: ${res.status} ${res.text().slice(0, 200)}`)
      t.match(res.header('content-type'), /^application\/json/, `${cs.name}: JSON`)
      t.match(res.json(), { error: cs.error, message: String }, `${cs.name}: ${cs.error}`)
    }
    const wrongMethod = await c.http.request('GET', `${c.routerUrl}/batch`)
    t.equal(wrongMethod.status, 405, 'GET /batch is 405')
    t.equal(wrongMethod.header('allow'), 'POST')
    t.equal((await c.http.get(c.routerUrl, key)).text(), 'orig', 'no refused batch wrote the key')
    t.equal((await c.http.get(c.routerUrl, fresh)).status, 404, 'no refused batch created a key')
    t.equal((await c.http.get(c.routerUrl, 'huge')).status, 404)
    // The router is still fine, and the same ops as a valid batch do apply.
    const ok = await runBatch(c.http, c.routerUrl, good)
    t.match(ok, [{ status: 200 }, { status: 201 }, { status: 204 }], 'the valid part alone applies')
    t.equal((await c.http.get(c.routerUrl, key)).text(), 'changed')

    const metrics = (await c.http.request('GET', `${c.routerUrl}/metrics`)).text()
    t.match(metrics, /shardkv_router_batches_total \d+/, 'batches are counted')
    t.match(metrics, /shardkv_router_batch_ops_total\{op="put"\} \d+/, 'batch ops are counted by op')
  })

  await t.test('a group whose node is down fails only its own ops', async (t) => {
    const down = c.primaries.find((s) => s.group === 'g2')!
    const ops: WireOp[] = []
    for (const g of ['g1', 'g2', 'g3']) {
      ops.push({ op: 'put', key: k(g, 5), value: b64(`while ${down.group} is down`) })
      ops.push({ op: 'get', key: k(g, 4) })
    }
    await c.killHard(down)
    const started = Date.now()
    const r = await runBatch(c.http, c.routerUrl, ops)
    const took = Date.now() - started
    t.ok(took >= RETRY_MS * 0.8 && took < RETRY_MS + 3000, `the dead group's ops were retried for about --retry-timeout-ms (${took} ms)`)
    ops.forEach((op, i) => {
      const res = r[i] as WireResult
      if (ring.ownerOf(op.key) === down.group) {
        t.match(res, { status: 503, error: 'unavailable', message: String }, `${op.op} ${op.key} (dead ${down.group}): 503 unavailable`)
      } else {
        t.ok(res.status === 200 || res.status === 201 || res.status === 404, `${op.op} ${op.key} (live ${ring.ownerOf(op.key) ?? '?'}): ${res.status}`)
      }
    })
    t.equal((await c.http.get(c.routerUrl, k('g1', 5))).text(), `while ${down.group} is down`, 'a live group\'s write applied')
    t.equal((await c.http.get(c.routerUrl, k('g3', 5))).text(), `while ${down.group} is down`)

    await c.restart(down)
    const after = await runBatch(c.http, c.routerUrl, [{ op: 'get', key: k('g2', 1) }, { op: 'put', key: k('g2', 5), value: b64('back') }])
    t.match(after, [{ status: 200, value: b64('matched') }, { status: 200 }], 'the group serves batches again after its node restarts')
  })
})
