import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startCluster } from '../harness/cluster'
import {
  createClient, KvError, NotFoundError, PreconditionFailedError, ValueTooLargeError, type KvClient, type KvEntry, type ClientMode
} from '../../src/client'
import { RoutingTable } from '../../src/membership/routing-table'
import { validateMap } from '../../src/membership/map'

/**
 * The client's API semantics, the same suite in both modes, over a real router and
 * three single-node groups: routed (every call through the router) and direct
 * (straight to each key's primary from the map the router publishes).
 */

const LIMIT = 70_000

async function rejects<E extends KvError> (t: tap.Test, p: Promise<unknown>, cls: new (...args: any[]) => E, code: string, what: string): Promise<E | undefined> {
  try {
    await p
    t.fail(`${what}: expected ${cls.name} (${code}), it resolved`)
    return undefined
  } catch (err) {
    t.ok(err instanceof cls, `${what}: ${cls.name} (got ${(err as Error).name}: ${(err as Error).message})`)
    t.equal((err as KvError).code, code, `${what}: code ${code}`)
    return err as E
  }
}

function isEntry (r: unknown): r is KvEntry {
  return typeof r === 'object' && r !== null && Buffer.isBuffer((r as KvEntry).value)
}

t.test('client API semantics, routed and direct', async (t) => {
  const c = await startCluster(t, {
    name: 'client-api',
    groups: 3,
    workers: 1,
    shardArgs: ['--max-value-bytes', String(LIMIT)],
    routerArgs: ['--max-value-bytes', String(LIMIT)]
  })
  const table = new RoutingTable(validateMap(await c.http.getJson(`${c.routerUrl}/cluster`)))

  for (const mode of ['routed', 'direct'] as ClientMode[]) {
    await t.test(`${mode} mode`, async (t) => {
      const kv: KvClient = createClient({ url: c.routerUrl, mode })
      t.teardown(async () => { await kv.close() })
      const p = `${mode}-${randomBytes(3).toString('hex')}`

      await t.test('binary values byte for byte, default and explicit content types', async (t) => {
        const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(50_000)])
        const put = await kv.put(`${p}/bin`, bytes)
        t.equal(put.created, true, 'created')
        t.match(put.etag, /^".+"$/, 'an ETag with quotes')
        const got = await kv.get(`${p}/bin`)
        t.ok(got.value.equals(bytes), `the same ${bytes.length} bytes`)
        t.equal(got.contentType, 'application/octet-stream', 'default content type')
        t.equal(got.etag, put.etag, 'the ETag of the write')

        await kv.put(`${p}/png`, bytes.subarray(0, 100), { contentType: 'image/png' })
        t.equal((await kv.get(`${p}/png`)).contentType, 'image/png', 'content type kept')
        await kv.put(`${p}/txt`, 'héllo ☃', { contentType: 'text/plain; charset=utf-8' })
        const txt = await kv.get(`${p}/txt`)
        t.equal(txt.value.toString('utf8'), 'héllo ☃', 'a string value is stored as UTF-8')
        t.equal(txt.contentType, 'text/plain; charset=utf-8')
        await kv.put(`${p}/empty`, Buffer.alloc(0))
        t.equal((await kv.get(`${p}/empty`)).value.length, 0, 'an empty value')
      })

      await t.test('Unicode, space and "/" keys', async (t) => {
        const keys = [`${p}/ключ ☃ 🔑`, `${p} with spaces`, `${p}/a/b/c`, `${p}%2F?#&+=`, `${p}/日本語`]
        for (const key of keys) {
          await kv.put(key, `v:${key}`)
          t.equal((await kv.get(key)).value.toString(), `v:${key}`, `round trip of ${JSON.stringify(key)}`)
        }
      })

      await t.test('ETags and preconditions', async (t) => {
        const key = `${p}/cond`
        const first = await kv.put(key, 'one')
        const second = await kv.put(key, 'two')
        t.equal(second.created, false, 'a replace is not created')
        t.not(second.etag, first.etag, 'the ETag changes on write')

        const third = await kv.put(key, 'three', { ifMatch: second.etag })
        t.not(third.etag, second.etag, 'If-Match with the current ETag succeeds')
        const stale = await rejects(t, kv.put(key, 'four', { ifMatch: first.etag }), PreconditionFailedError, 'precondition_failed', 'If-Match with an old ETag')
        t.equal(stale?.status, 412)
        t.equal(stale?.current, third.etag, 'the error carries the current ETag')
        t.equal((await kv.get(key)).value.toString(), 'three', 'the refused write changed nothing')
        await kv.put(key, 'star', { ifMatch: '*' })

        const absent = await rejects(t, kv.put(`${p}/cond-absent`, 'x', { ifMatch: '*' }), PreconditionFailedError, 'precondition_failed', 'If-Match * on an absent key')
        t.equal(absent?.current, null, 'current is null for an absent key')

        const created = await kv.put(`${p}/once`, 'first', { ifNoneMatch: '*' })
        t.equal(created.created, true, 'If-None-Match * creates an absent key')
        const again = await rejects(t, kv.put(`${p}/once`, 'second', { ifNoneMatch: '*' }), PreconditionFailedError, 'precondition_failed', 'If-None-Match * on an existing key')
        t.equal(again?.current, created.etag)
        t.equal((await kv.get(`${p}/once`)).value.toString(), 'first')

        await rejects(t, kv.delete(`${p}/once`, { ifMatch: first.etag }), PreconditionFailedError, 'precondition_failed', 'conditional delete with a wrong ETag')
        await kv.delete(`${p}/once`, { ifMatch: created.etag })
        await rejects(t, kv.get(`${p}/once`), NotFoundError, 'not_found', 'after a conditional delete')
      })

      await t.test('NotFoundError on a missing and on a deleted key', async (t) => {
        const nf = await rejects(t, kv.get(`${p}/never`), NotFoundError, 'not_found', 'a key never written')
        t.equal(nf?.status, 404)
        await kv.put(`${p}/gone`, 'x')
        await kv.delete(`${p}/gone`)
        await rejects(t, kv.get(`${p}/gone`), NotFoundError, 'not_found', 'a deleted key')
        await kv.delete(`${p}/gone`)
        t.pass('deleting an absent key succeeds')
      })

      await t.test('ValueTooLargeError', async (t) => {
        await kv.put(`${p}/big`, 'small')
        const e = await rejects(t, kv.put(`${p}/big`, randomBytes(LIMIT + 1)), ValueTooLargeError, 'value_too_large', `a value of ${LIMIT + 1} bytes`)
        t.equal(e?.status, 413)
        t.equal((await kv.get(`${p}/big`)).value.toString(), 'small', 'the refused write changed nothing')
        const ok = await kv.put(`${p}/big`, randomBytes(LIMIT))
        t.ok(ok.etag, `exactly ${LIMIT} bytes is accepted`)
      })

      await t.test('invalid keys', async (t) => {
        for (const [key, what] of [['', 'empty'], ['k'.repeat(1025), '1025 bytes'], ['é'.repeat(513), '1026 bytes of UTF-8'], ['\uD800x', 'a lone surrogate']] as const) {
          await rejects(t, kv.get(key), KvError, 'invalid_key', `get of ${what}`)
          await rejects(t, kv.put(key, 'v'), KvError, 'invalid_key', `put of ${what}`)
        }
        await rejects(t, kv.getMany([`${p}/fine`, '']), KvError, 'invalid_key', 'getMany with an empty key')
        const max = 'k'.repeat(1024)
        await kv.put(`${max.slice(p.length)}${p}`, 'edge')
        t.pass('a 1024-byte key is accepted')
      })

      await t.test('getMany, putMany, deleteMany with mixed results, across groups', async (t) => {
        const keys = Array.from({ length: 30 }, (_, i) => `${p}/many/${i}`)
        const groups = new Set(keys.map((k) => table.groupOf(k)))
        t.equal(groups.size, 3, 'the keys span all three groups')
        const existing = await kv.put(`${p}/many/exists`, 'old')

        const puts = await kv.putMany([
          ...keys.map((key, i) => ({ key, value: Buffer.from([i, 0, 255]), contentType: i % 2 === 0 ? 'application/x-even' : undefined })),
          { key: `${p}/many/exists`, value: 'nope', ifNoneMatch: '*' as const },
          { key: `${p}/many/exists`, value: 'nope', ifMatch: '"not.the.one"' },
          { key: `${p}/many/exists`, value: 'new', ifMatch: existing.etag }
        ])
        t.equal(puts.length, keys.length + 3, 'one result per item')
        t.ok(puts.slice(0, keys.length).every((r) => !(r instanceof Error) && r.created), 'the new keys are created')
        const [noneMatch, wrongMatch, rightMatch] = puts.slice(keys.length)
        t.ok(noneMatch instanceof PreconditionFailedError && noneMatch.current === existing.etag, 'If-None-Match * on an existing key: 412 with current')
        t.ok(wrongMatch instanceof PreconditionFailedError, 'a wrong If-Match: 412')
        t.ok(!(rightMatch instanceof Error) && rightMatch?.created === false, 'the right If-Match: replaced')

        const gets = await kv.getMany([...keys, `${p}/many/missing`, `${p}/many/exists`])
        t.equal(gets.length, keys.length + 2)
        const wrong = keys.filter((_, i) => {
          const g = gets[i]
          return !isEntry(g) || !g.value.equals(Buffer.from([i, 0, 255])) || g.contentType !== (i % 2 === 0 ? 'application/x-even' : 'application/octet-stream')
        })
        t.same(wrong, [], 'every value and content type in the caller\'s order')
        t.ok(gets[keys.length] instanceof NotFoundError, 'a missing key is a NotFoundError in its place')
        const ex = gets[keys.length + 1]
        t.ok(isEntry(ex) && ex.value.toString() === 'new' && ex.etag === (rightMatch as { etag: string }).etag, 'the conditional write took effect')

        const dels = await kv.deleteMany([...keys.slice(0, 10), { key: `${p}/many/exists`, ifMatch: existing.etag }, `${p}/many/missing`])
        t.same(dels.slice(0, 10), Array(10).fill(undefined), 'deleted')
        t.ok(dels[10] instanceof PreconditionFailedError, 'a delete with a stale If-Match: 412')
        t.equal(dels[11], undefined, 'deleting an absent key succeeds')
        const after = await kv.getMany(keys.slice(0, 12))
        t.ok(after.slice(0, 10).every((r) => r instanceof NotFoundError), 'the deleted keys are gone')
        t.ok(after.slice(10).every(isEntry), 'the others are still there')
        t.same(await kv.getMany([]), [], 'an empty batch is empty')

        await rejects(t, kv.putMany([{ key: `${p}/many/0`, value: 'fine' }, { key: `${p}/many/big`, value: randomBytes(LIMIT + 1) }]),
          ValueTooLargeError, 'value_too_large', 'a batch with a value over the limit')
      })

      await t.test('batches larger than the per-request limit are split', async (t) => {
        const small = createClient({ url: c.routerUrl, mode, maxBatchOps: 40 })
        t.teardown(async () => { await small.close() })
        const keys = Array.from({ length: 130 }, (_, i) => `${p}/split/${i}`)
        const puts = await small.putMany(keys.map((key) => ({ key, value: key })))
        t.ok(puts.every((r) => !(r instanceof Error)), '130 puts in 4 requests')
        const gets = await small.getMany(keys)
        t.same(gets.map((g) => isEntry(g) ? g.value.toString() : String(g)), keys, 'read back in order')
      })

      const stats = kv.stats()
      t.comment(`${mode} requests: ${JSON.stringify(stats.requests)}; map fetches ${stats.mapFetches}`)
      const toRouter = stats.requests[c.routerUrl] ?? 0
      const toNodes = c.primaries.reduce((n, s) => n + (stats.requests[s.url] ?? 0), 0)
      if (mode === 'routed') {
        t.equal(toNodes, 0, 'routed mode sends nothing to the nodes')
        t.ok(toRouter > 30, `everything went to the router (${toRouter})`)
      } else {
        t.equal(toRouter, 0, 'direct mode sends no data request to the router (the map is settled)')
        t.ok(c.primaries.every((s) => (stats.requests[s.url] ?? 0) > 5), `every node got requests: ${JSON.stringify(stats.requests)}`)
        t.equal(stats.mapFetches, 1, 'the map was loaded once')
      }
    })
  }
})
