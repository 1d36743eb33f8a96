import t from 'tap'
import { startCluster } from '../harness/cluster'
import { concurrentRounds } from '../harness/batch'
import { checkClientHistory } from '../harness/client-load'
import { createClient, KvError, type KvClient } from '../../src/client'

/**
 * The direct client sends concurrent unconditional put() and delete() calls to each
 * primary as one POST /batch, each op carrying the call's request id (src/client/direct.ts).
 * That must change nothing a caller sees: each call answers what it answers alone, a
 * batch the node refuses as a whole sends its writes alone (applied once), and a
 * read/write history through the coalescing client checks out.
 */

const ROUNDS = 3
const WIDTH = 24

const describe = (r: unknown): unknown => r instanceof KvError ? { error: r.code, status: r.status } : r
const total = (kv: KvClient): number => Object.values(kv.stats().requests).reduce((a, b) => a + b, 0)

const together = async <T>(call: (i: number) => Promise<T>): Promise<T[]> => await concurrentRounds(ROUNDS, WIDTH, call)

t.test('concurrent puts and deletes go as batches and answer as they would alone', async (t) => {
  const c = await startCluster(t, { name: 'cwcoalesce', groups: 2, replicas: 1 })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  const alone = createClient({ url: c.routerUrl, mode: 'direct', writeCoalesceMaxKeys: 1 })
  t.teardown(async () => { await kv.close(); await alone.close() })

  const lone = { created: await alone.put('cw/alone', 'one'), replaced: await alone.put('cw/alone', 'two') }
  t.same([lone.created.created, lone.replaced.created], [true, false], 'alone: created, then replaced')

  const key = (i: number): string => `cw/k${i}`
  const before = total(kv)
  const created = await together(async (i) => await kv.put(key(i), `one-${i}`, { contentType: 'text/plain' }))
  const replaced = await together(async (i) => await kv.put(key(i), `two-${i}`))
  const sent = total(kv) - before
  t.ok(sent < ROUNDS * WIDTH, `${2 * ROUNDS * WIDTH} concurrent puts took ${sent} requests`)
  t.same(created.filter((r) => !r.created || !/^"[^"]+"$/.test(r.etag)), [], 'every concurrent put of a new key answers created, with an ETag')
  t.same(replaced.filter((r) => r.created), [], 'every concurrent replace answers not created')

  const reads = await Promise.all(created.map(async (_, i) => await alone.get(key(i))))
  t.same(reads.map((e, i) => e.value.toString() === `two-${i}` && e.etag === replaced[i]?.etag).filter((ok) => !ok), [], 'every key reads its last value, with the ETag its put answered')
  t.equal(reads[0]?.contentType, 'application/octet-stream', 'the content type of the last put')

  const deleted = await together(async (i) => { await kv.delete(key(i)); return i })
  t.equal(deleted.length, ROUNDS * WIDTH, 'every concurrent delete answered')
  const gone = await Promise.all(deleted.map(async (i) => describe(await alone.get(key(i)).catch((err: unknown) => err))))
  t.same(gone.filter((g) => (g as { status?: number }).status !== 404), [], 'every deleted key is not found')
})

t.test('a batch the node refuses as a whole sends its writes alone, each applied once', async (t) => {
  // Nodes take at most 4 ops per batch: the client's larger coalesced batches are refused (413) and resent alone.
  const c = await startCluster(t, { name: 'cwcoalesce-refused', groups: 1, shardArgs: ['--max-batch-ops', '4'] })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  t.teardown(async () => { await kv.close() })
  const results = await together(async (i) => await kv.put(`cwr/${i % 20}`, `v${i}`))
  t.equal(results.length, ROUNDS * WIDTH, 'every put answered')
  const firsts = results.filter((r) => r.created).length
  t.equal(firsts, 20, 'each of the 20 keys was created exactly once (the rest replaced it)')
})

t.test('a read/write history through the write-coalescing client checks out', async (t) => {
  const c = await startCluster(t, { name: 'cwcoalesce-history', groups: 2, replicas: 1 })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  const reader = createClient({ url: c.routerUrl, mode: 'routed' })
  t.teardown(async () => { await kv.close(); await reader.close() })
  await checkClientHistory(t, kv, reader)
})
