import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expiryOf, formatRemainingTtl, isExpired, parseTtl, ttlText, MAX_TTL_SECONDS } from '../../src/protocol/ttl'
import { nextSweepDelay } from '../../shards/expiry-sweeper'
import { KvStore } from '../../src/storage/store'
import { ReplicaStore } from '../../src/storage/replica-store'
import { MigrationStore } from '../../src/storage/migration-store'
import { ExpiryReader } from '../../src/storage/expiry'
import { parseBatch, toWire } from '../../src/protocol/batch'
import { fingerprintOf } from '../../src/protocol/request-id'

t.test('TTL text: seconds with at most 3 decimals, 0.001 to ten years', async (t) => {
  const table: Array<{ raw: unknown, want: number | undefined | 'invalid' }> = [
    { raw: undefined, want: undefined },
    { raw: '1', want: 1000 },
    { raw: '1.5', want: 1500 },
    { raw: '0.001', want: 1 },
    { raw: String(MAX_TTL_SECONDS), want: MAX_TTL_SECONDS * 1000 },
    { raw: 2, want: 2000 },
    { raw: 0.25, want: 250 },
    { raw: '0', want: 'invalid' },
    { raw: '0.0', want: 'invalid' },
    { raw: '-1', want: 'invalid' },
    { raw: '1.2345', want: 'invalid' },
    { raw: '1e3', want: 'invalid' },
    { raw: ' 1', want: 'invalid' },
    { raw: '', want: 'invalid' },
    { raw: 'abc', want: 'invalid' },
    { raw: String(MAX_TTL_SECONDS + 1), want: 'invalid' },
    { raw: '999999999', want: 'invalid' },
    { raw: ['1', '2'], want: 'invalid' },
    { raw: 0, want: 'invalid' },
    { raw: -3, want: 'invalid' },
    { raw: 1.0001, want: 'invalid' },
    { raw: Number.NaN, want: 'invalid' },
    { raw: Infinity, want: 'invalid' },
    { raw: true, want: 'invalid' }
  ]
  for (const row of table) {
    if (row.want === 'invalid') {
      t.throws(() => parseTtl(row.raw, 'ttl'), { code: 'invalid_ttl', status: 400 }, `${JSON.stringify(row.raw)} is refused`)
    } else {
      t.equal(parseTtl(row.raw, 'ttl'), row.want, `${JSON.stringify(row.raw)} → ${String(row.want)}`)
    }
  }
  for (const ms of [1, 10, 999, 1000, 1500, 123456, MAX_TTL_SECONDS * 1000]) t.equal(parseTtl(ttlText(ms), 'ttl'), ms, `ttlText(${ms}) parses back`)
})

t.test('expiry decisions', async (t) => {
  t.equal(expiryOf(1000, undefined), null, 'no TTL: never expires')
  t.equal(expiryOf(1000, 500), 1500)
  const table: Array<{ expiresAt: number | null, now: number, expired: boolean, left: string | undefined }> = [
    { expiresAt: null, now: 5, expired: false, left: undefined },
    { expiresAt: 1500, now: 1499, expired: false, left: '0.001' },
    { expiresAt: 1500, now: 1500, expired: true, left: '0.000' },
    { expiresAt: 1500, now: 9000, expired: true, left: '0.000' },
    { expiresAt: 3500, now: 1000, expired: false, left: '2.500' }
  ]
  for (const r of table) {
    t.equal(isExpired(r.expiresAt, r.now), r.expired, `expired(${String(r.expiresAt)}, ${r.now})`)
    t.equal(formatRemainingTtl(r.expiresAt, r.now), r.left, `left(${String(r.expiresAt)}, ${r.now})`)
  }
})

t.test('the sweeper paces itself: back to back only while passes are full', async (t) => {
  t.equal(nextSweepDelay(256, 256, 1000), 0)
  t.equal(nextSweepDelay(255, 256, 1000), 1000)
  t.equal(nextSweepDelay(0, 256, 1000), 1000)
})

t.test('a batch put carries its TTL; other ops may not; it goes on the wire as it came', async (t) => {
  const limits = { maxOps: 10, maxValueBytes: 100 }
  const [put] = parseBatch({ ops: [{ op: 'put', key: 'a', value: 'aGk=', ttl: 1.5 }] }, limits)
  t.equal(put?.ttlMs, 1500)
  t.equal(toWire(put!, undefined).ttl, 1.5)
  t.throws(() => parseBatch({ ops: [{ op: 'get', key: 'a', ttl: 1 }] }, limits), { code: 'invalid_request' })
  t.throws(() => parseBatch({ ops: [{ op: 'put', key: 'a', value: '', ttl: 0 }] }, limits), { code: 'invalid_ttl' })
  t.throws(() => parseBatch({ ops: [{ op: 'put', key: 'a', value: '', ttl: 'x' }] }, limits), { code: 'invalid_ttl' })
})

t.test('a TTL binds the request id; a write without one fingerprints as before TTLs', async (t) => {
  const base = { op: 'put' as const, key: 'k', value: Buffer.from('v'), contentType: 'text/plain' }
  t.equal(fingerprintOf(base), fingerprintOf({ ...base, ttlMs: undefined }))
  t.not(fingerprintOf(base), fingerprintOf({ ...base, ttlMs: 1000 }))
  t.not(fingerprintOf({ ...base, ttlMs: 2000 }), fingerprintOf({ ...base, ttlMs: 1000 }))
})

function openStore (t: tap.Test, name = 'a'): KvStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-ttl-'))
  const store = new KvStore({ path: join(dir, `${name}.db`), nodeId: name, synchronous: 'NORMAL' })
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  return store
}

/** Waits (without a fixed sleep) until the clock has passed `at`. */
async function clockPast (at: number): Promise<void> {
  while (Date.now() <= at) await new Promise((resolve) => setTimeout(resolve, Math.max(1, at - Date.now() + 1)))
}

t.test('store: an expired row reads as absent, and as no value for conditions', async (t) => {
  const store = openStore(t)
  const w = store.put('k', Buffer.from('v'), 'text/plain', {}, undefined, 60_000)
  t.ok(w.ok)
  const found = store.get('k')
  t.ok(found !== undefined && found.expiresAt !== null && found.expiresAt > Date.now(), 'readable, with its expiry')
  const at = (found?.expiresAt ?? 0)
  t.ok(store.get('k', at - 1) !== undefined, 'readable up to the millisecond before')
  t.equal(store.get('k', at), undefined, 'absent from its expiry on')

  store.put('short', Buffer.from('v'), 'text/plain', {}, undefined, 5)
  const expiry = store.get('short')?.expiresAt ?? 0
  await clockPast(expiry)
  t.equal(store.get('short'), undefined)
  const [read] = store.applyOps([{ op: 'get', key: 'short' }])
  t.match(read, { kind: 'read', found: undefined }, 'a batch get sees it absent')
  t.ok(read?.kind === 'read' && read.tombstoneSeq !== undefined, '... and final (no fallback read)')
  const ifMatch = store.put('short', Buffer.from('x'), 'text/plain', { ifMatch: '*' })
  t.match(ifMatch, { ok: false, reason: 'precondition_failed', current: undefined }, 'If-Match: * fails on an expired value')
  const created = store.put('short', Buffer.from('new'), 'text/plain', { ifNoneMatch: '*' })
  t.match(created, { ok: true, existed: false }, 'If-None-Match: * passes, and it is a create')
  t.equal(store.get('short')?.expiresAt, null, 'a write without a TTL clears the expiry')
})

t.test('store: the sweeper\'s expire op deletes only the expired version it saw, keeping the expiry on the tombstone', async (t) => {
  const store = openStore(t)
  const reader = new ExpiryReader(store)
  store.put('live', Buffer.from('v'), 'text/plain', {}, undefined, 60_000)
  store.put('plain', Buffer.from('v'), 'text/plain')
  const w = store.put('gone', Buffer.from('v'), 'text/plain', {}, undefined, 5)
  const expiry = store.get('gone')?.expiresAt ?? 0
  const [notYet] = store.applyOps([{ op: 'expire', key: 'live', version: store.get('live')?.version ?? '' }])
  t.match(notYet, { kind: 'write', outcome: { ok: false } }, 'a row not expired yet is not deleted')
  await clockPast(expiry)
  const due = reader.due(Date.now(), 10)
  t.same(due.map((r) => r.key), ['gone'], 'only the expired row is due')
  const [wrong] = store.applyOps([{ op: 'expire', key: 'gone', version: 'other' }])
  t.match(wrong, { kind: 'write', outcome: { ok: false } }, 'another version is not deleted')
  const [done] = store.applyOps([{ op: 'expire', key: 'gone', version: w.ok ? w.version : '' }])
  t.match(done, { kind: 'write', outcome: { ok: true } })
  const [again] = store.applyOps([{ op: 'expire', key: 'gone', version: w.ok ? w.version : '' }])
  t.match(again, { kind: 'write', outcome: { ok: false } }, 'a second sweep of it changes nothing')
  t.same(reader.due(Date.now(), 10), [], 'nothing due any more')
  const tomb = store.changesSince(0, 100).find((r) => r.key === 'gone')
  t.match(tomb, { deleted: true, expiresAt: expiry }, 'the tombstone says the expiry deleted it')
  store.delete('plain')
  t.equal(store.changesSince(0, 100).find((r) => r.key === 'plain')?.expiresAt, null, 'a client delete has no expiry')
})

t.test('store: the expiry travels with the row through replication and migration', async (t) => {
  const primary = openStore(t, 'p')
  const replica = openStore(t, 'r')
  const target = openStore(t, 't')
  primary.put('k', Buffer.from('v'), 'text/plain', {}, undefined, 60_000)
  const expiresAt = primary.get('k')?.expiresAt
  const window = primary.logWindow(0, 100)
  new ReplicaStore(replica).apply(window)
  t.equal(replica.get('k')?.expiresAt, expiresAt, 'a replica holds the same expiry')
  const source = new MigrationStore(primary)
  const scan = source.scanMoving(0, 100, () => true, 1 << 20)
  new MigrationStore(target).importIfAbsent(scan, () => {})
  t.equal(target.get('k')?.expiresAt, expiresAt, 'a migration target holds the same expiry')
  t.equal(source.keyTransfer('k', undefined).rows[0]?.expiresAt, expiresAt, 'copy on touch carries it')
})
