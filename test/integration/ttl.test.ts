import t from 'tap'
import { createClient, NotFoundError, KvError, type KvClient, type KvEntry } from '../../src/client'
import { waitFor, startCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, ringOfView } from '../harness/cluster-view'
import { rawRow } from '../harness/replication'
import { addGroup, waitForRebalance, rebalanceProgress } from '../harness/rebalance'
import { checkTtlHistory, type TtlRead, type TtlWrite } from '../harness/ttl-history'
import { HEADER } from '../../src/protocol/wire'

/**
 * TTL (issue 12) under load, on every read path, through a primary SIGKILL and a
 * rebalance. Writers put keys with 1–2 s TTLs (single PUTs routed and direct, batch
 * puts); readers read keys written in the last few seconds — some still live, some
 * just expired — through the router's GET (fast path, coalesced when reads meet),
 * direct GETs (coalesced too), and batch gets routed and direct; during the rebalance
 * the router's fallback reads of moving keys take part. Every key is written once, so
 * each read is judged against that write's window (test/harness/ttl-history.ts): no
 * read of an expired key, no early expiry. Afterwards the sweeper must have turned the
 * expiries into replicated deletes: tombstones on the primary and its replica.
 */

const READERS = 6
const WRITERS = 3
/** Keys that live long: they keep the rebalance's copy busy (and check batch-put TTLs). */
const LONG_KEYS = 2000

interface Paths { routed: KvClient, direct: KvClient }

type WritePath = 'put-routed' | 'put-direct' | 'putMany-routed'
type ReadPath = 'get-routed' | 'get-direct' | 'getMany-routed' | 'getMany-direct'
const WRITE_PATHS: WritePath[] = ['put-routed', 'put-direct', 'putMany-routed']
const READ_PATHS: ReadPath[] = ['get-routed', 'get-direct', 'getMany-routed', 'getMany-direct']

async function write (c: Paths, path: WritePath, key: string, value: string, ttl: number): Promise<void> {
  if (path === 'put-routed') await c.routed.put(key, value, { ttl })
  else if (path === 'put-direct') await c.direct.put(key, value, { ttl })
  else {
    const [r] = await c.routed.putMany([{ key, value, ttl }])
    if (r instanceof KvError) throw r
  }
}

/** The value read (null: absent); throws on no answer. */
async function read (c: Paths, path: ReadPath, keys: string[]): Promise<Array<string | null | undefined>> {
  const one = (r: KvEntry | KvError): string | null | undefined => r instanceof NotFoundError ? null : r instanceof KvError ? undefined : r.value.toString()
  if (path === 'getMany-routed') return (await c.routed.getMany(keys)).map(one)
  if (path === 'getMany-direct') return (await c.direct.getMany(keys)).map(one)
  const client = path === 'get-routed' ? c.routed : c.direct
  // Concurrent single GETs: the router and the direct client coalesce them into batches.
  return await Promise.all(keys.map(async (k) => {
    try {
      return one(await client.get(k))
    } catch (err) {
      if (err instanceof KvError) return one(err)
      throw err
    }
  }))
}

t.test('keys with 1-2 s TTLs: never read after their expiry, never missing before it, through a failover and a rebalance', async (t) => {
  const c = await startCluster(t, { name: 'ttl', groups: 2, replicas: 1, routerArgs: ['--rebalance-rows-per-sec', '800'] })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const clients: Paths = {
    routed: createClient({ url: c.routerUrl, retryTimeoutMs: 20_000, timeoutMs: 30_000 }),
    direct: createClient({ url: c.routerUrl, mode: 'direct', retryTimeoutMs: 20_000, timeoutMs: 30_000 })
  }
  t.teardown(async () => { await Promise.all([clients.routed.close(), clients.direct.close()]) })
  const run = Date.now().toString(36)

  const long = Array.from({ length: LONG_KEYS }, (_, i) => ({ key: `ttl-${run}/long/${i}`, value: `long-${i}`, ttl: 600 }))
  for (let i = 0; i < long.length; i += 500) {
    const results = await clients.routed.putMany(long.slice(i, i + 500))
    t.equal(results.filter((r) => r instanceof KvError).length, 0, `batch put of long-lived keys ${i}..${i + 499}`)
  }
  const entry = await clients.routed.get(long[0]!.key)
  t.ok(entry.ttl !== undefined && entry.ttl > 590 && entry.ttl <= 600, `GET answers the remaining TTL (${String(entry.ttl)} s)`)

  const writes = new Map<string, TtlWrite>()
  const reads: TtlRead[] = []
  /** Keys whose write ended, newest last: what readers pick from. */
  const written: TtlWrite[] = []
  let stop = false
  let n = 0
  const writer = async (w: number): Promise<void> => {
    while (!stop) {
      const i = n++
      const key = `ttl-${run}/k/${i}`
      const rec: TtlWrite = { key, value: `v${i}`, ttlMs: i % 2 === 0 ? 1000 : 2000, start: Date.now(), end: 0, acked: false }
      writes.set(key, rec)
      try {
        await write(clients, WRITE_PATHS[(i + w) % WRITE_PATHS.length]!, key, rec.value, rec.ttlMs / 1000)
        rec.acked = true
      } catch { /* outcome unknown: checked as such */ }
      rec.end = Date.now()
      written.push(rec)
    }
  }
  const reader = async (r: number): Promise<void> => {
    let i = 0
    while (!stop) {
      // Keys written in the last ~3 s: live ones, ones expiring now, and expired ones.
      const recent = written.filter((x) => x.end > Date.now() - 3000)
      if (recent.length === 0) { await new Promise((resolve) => setImmediate(resolve)); continue }
      const keys = Array.from({ length: 4 }, () => recent[Math.floor(Math.random() * recent.length)]!.key)
      const path = READ_PATHS[(i++ + r) % READ_PATHS.length]!
      const start = Date.now()
      let values: Array<string | null | undefined>
      try {
        values = await read(clients, path, keys)
      } catch {
        values = keys.map(() => undefined)
      }
      const end = Date.now()
      keys.forEach((key, j) => reads.push({ key, path, start, end, value: values[j] }))
    }
  }
  const load = Promise.all([
    ...Array.from({ length: WRITERS }, async (_, w) => { await writer(w) }),
    ...Array.from({ length: READERS }, async (_, r) => { await reader(r) })
  ])
  t.teardown(async () => { stop = true; await load })
  const readsSince = (at: number): number => reads.filter((x) => x.start >= at && x.value !== undefined).length

  const g1 = c.byUrl(primaryUrl(view, 'g1'))
  try {
    await waitFor(() => readsSince(0) > 400, 60_000, 'reads under way')
    // A failover: g1's primary SIGKILLed; its replica takes over with the rows and their expiries.
    const g1Replica = replicaUrls(view, 'g1')[0]!
    const killed = await c.killHard(g1)
    view = await c.waitForView((v) => groupOf(v, 'g1').term === 2 && primaryUrl(v, 'g1') === g1Replica, 'g1\'s replica primary at term 2', 60_000)
    t.comment(`failover: g1 term 2 published ${Date.now() - killed.at} ms after the kill`)
    const afterFailover = Date.now()
    await waitFor(() => readsSince(afterFailover) > 400, 60_000, 'reads after the failover')

    // A rebalance: g3 joins; the throttled copy keeps keys in handover (fallback reads, copy on touch) for a while.
    const g3 = await c.addNode('g3', 'g3')
    const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1 })
    t.equal(added.status, 202, `g3 added: ${added.text.slice(0, 160)}`)
    const seen = new Set<string>()
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase !== 'fencing', { timeoutMs: 60_000, seen, what: 'copying' })
    const duringCopy = Date.now()
    const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, seen, what: 'done' })
    t.comment(`rebalance phases ${[...seen].join(' -> ')}, ${readsSince(duringCopy)} reads while it ran: ${JSON.stringify(done)}`)
    const afterRebalance = Date.now()
    await waitFor(() => readsSince(afterRebalance) > 400, 60_000, 'reads after the rebalance')
  } finally {
    stop = true
    await load
  }

  const report = checkTtlHistory(writes, reads)
  const acked = [...writes.values()].filter((w) => w.acked).length
  t.comment(`${writes.size} keys written (${acked} acknowledged), ${reads.length} reads, ${report.checked} with an answer: ${JSON.stringify(report.byPath)}`)
  t.ok(report.checked > 1000, 'enough reads were checked')
  for (const p of READ_PATHS) t.ok((report.byPath[p] ?? 0) > 50, `reads on path ${p}: ${report.byPath[p] ?? 0}`)
  const early = reads.filter((r) => r.value === null).length
  const live = reads.filter((r) => typeof r.value === 'string').length
  t.ok(early > 100 && live > 100, `reads saw both live (${live}) and expired (${early}) keys`)
  t.same(report.violations.slice(0, 20), [], `no read of an expired key, no early expiry (${report.violations.length} violations)`)

  // The long-lived keys read back with their TTLs after the failover and the rebalance.
  const back = await clients.routed.getMany(long.slice(0, 200).map((x) => x.key))
  t.same(back.filter((r) => r instanceof KvError || r.ttl === undefined || r.ttl > 600).length, 0, 'long-lived keys survived with their TTLs')

  // The sweeper: expired keys become tombstones, on each primary and replicated (also to
  // the killed primary, which returns as a replica and resyncs).
  await c.restart(g1)
  view = await c.waitForView(allReplicasInSync, 'replicas in sync, the old g1 primary among them', 60_000)
  const sample = [...writes.values()].filter((w) => w.acked).slice(0, 40)
  const unswept = async (): Promise<string[]> => {
    const missing: string[] = []
    for (const w of sample) {
      const v = await c.view()
      for (const g of v.groups) {
        for (const node of g.nodes) {
          const row = await rawRow(c.http, node.url, w.key)
          if (row !== undefined && !row.deleted) missing.push(`${w.key} live on ${node.url}`)
        }
      }
    }
    return missing
  }
  let left: string[] = []
  await waitFor(async () => { left = await unswept(); return left.length === 0 }, 60_000, () => `expired keys swept everywhere: ${left.slice(0, 5).join('; ')}`)
  t.pass('every sampled expired key is a tombstone on every node that holds it')

  // A bad TTL header is a 400 and writes nothing.
  const bad = await c.http.put(c.routerUrl, `ttl-${run}/bad`, 'x', { [HEADER.ttl]: '0' })
  t.equal(bad.status, 400)
  t.match(bad.json(), { error: 'invalid_ttl' })
  const after = await c.http.get(c.routerUrl, `ttl-${run}/bad`)
  t.equal(after.status, 404, 'nothing was written')
  t.equal(await rebalanceProgress(c.http, c.routerUrl).then((p) => p?.phase), 'done')
})

t.test('during a rebalance, fallback reads of keys not copied yet judge the expiry on the old owner', async (t) => {
  // Budgets for a busy machine: the TTL (15 s) leaves room for the writes, the add and the
  // first reads to land before it; the throttled copy (1500 rows at 60/s, ~25 s) reaches
  // the TTL keys only after the reads past it.
  const ttlSeconds = 15
  const c = await startCluster(t, { name: 'ttl-fallback', groups: 1, replicas: 0, routerArgs: ['--rebalance-rows-per-sec', '60'] })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 20_000, timeoutMs: 30_000 })
  t.teardown(async () => { await client.close() })
  const run = Date.now().toString(36)
  // Rows the throttled copy scans first (lower seqs): the TTL keys, written last, are copied last.
  const pre = await client.putMany(Array.from({ length: 1500 }, (_, i) => ({ key: `tf-${run}/pre/${i}`, value: 'p' })))
  t.equal(pre.filter((r) => r instanceof KvError).length, 0, 'preloaded')
  const writes = new Map<string, TtlWrite>()
  for (let i = 0; i < 40; i++) {
    const key = `tf-${run}/ttl/${i}`
    const w: TtlWrite = { key, value: `v${i}`, ttlMs: ttlSeconds * 1000, start: Date.now(), end: 0, acked: false }
    await client.put(key, w.value, { ttl: ttlSeconds })
    w.end = Date.now()
    w.acked = true
    writes.set(key, w)
  }
  const g2 = await c.addNode('g2', 'g2')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g2', url: g2.url, weight: 1 })
  t.equal(added.status, 202, `g2 added: ${added.text.slice(0, 120)}`)
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying', { timeoutMs: 60_000, what: 'copying' })
  const view = await c.view()
  const moving = [...writes.keys()].filter((k) => ringOfView(view).ownerOf(k) === 'g2')
  t.ok(moving.length > 5, `${moving.length} TTL keys move to g2`)

  const reads: TtlRead[] = []
  const readAll = async (): Promise<string[]> => {
    const notCopied: string[] = []
    for (const key of moving) {
      const before = await rawRow(c.http, g2.url, key)
      const start = Date.now()
      let value: string | null
      try {
        value = (await client.get(key)).value.toString()
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err
        value = null
      }
      reads.push({ key, path: 'fallback', start, end: Date.now(), value })
      // Read while g2 had no copy before and after: the answer came from the old owner.
      if (before === undefined && await rawRow(c.http, g2.url, key) === undefined) notCopied.push(key)
    }
    return notCopied
  }
  const early = await readAll()
  const lastEnd = Math.max(...[...writes.values()].map((w) => w.end))
  await waitFor(() => Date.now() >= lastEnd + ttlSeconds * 1000, 60_000, 'every TTL passed')
  const late = await readAll()
  t.comment(`fallback reads: ${early.length} before the expiry, ${late.length} after it, of ${moving.length} moving keys`)
  t.ok(early.length > 0 && late.length > 0, 'reads of keys not copied yet went to the old owner, before and after their expiry')
  const report = checkTtlHistory(writes, reads)
  t.ok(reads.some((r) => r.value !== null) && reads.some((r) => r.value === null), 'values before the expiry, absences after')
  t.same(report.violations, [], 'no read of an expired key, no early expiry through fallback reads')
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, what: 'done' })
})
