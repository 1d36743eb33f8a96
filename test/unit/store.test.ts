import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KvStore, StoreError, type WriteOutcome } from '../../src/storage/store'
import { fingerprintOf, newRequestId, parseRequestId, type RequestStamp } from '../../src/protocol/request-id'
import type { WriteConditions } from '../../src/protocol/preconditions'

function tempDb (t: tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'sub', 'shard.db')
}

function open (t: tap.Test, path: string, nodeId?: string): KvStore {
  const s = new KvStore({ path, nodeId, synchronous: 'NORMAL' })
  t.teardown(() => s.close())
  return s
}

/** A request id bound to a put (value given) or a delete, as a shard node stamps one. */
function stampOf (id: string, key: string, value?: string, contentType = 'text/plain', conditions: WriteConditions = {}): RequestStamp {
  const parsed = parseRequestId(id)
  if (parsed === undefined) throw new Error(`bad test id ${id}`)
  const op = value === undefined
    ? { op: 'delete' as const, key, conditions }
    : { op: 'put' as const, key, value: Buffer.from(value), contentType, conditions }
  return { ...parsed, fingerprint: fingerprintOf(op) }
}

function ok (t: tap.Test, out: WriteOutcome, what: string): { version: string, seq: number, replayed: boolean, existed: boolean } {
  if (!out.ok) {
    t.fail(`${what}: expected ok, got ${JSON.stringify(out)}`)
    throw new Error(what)
  }
  return out
}

t.test('put/get round-trips bytes, content type and version', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  const w = ok(t, s.put('k', bytes, 'application/x-test'), 'put')
  t.equal(w.existed, false, 'first write creates')
  t.equal(w.replayed, false)
  t.equal(w.version, `n1.1.${w.seq.toString(36)}`, 'version is nodeId.term.seq')
  const got = s.get('k')
  t.ok(got !== undefined && Buffer.compare(got.value, bytes) === 0, 'all 256 byte values come back')
  t.equal(got?.contentType, 'application/x-test')
  t.equal(got?.version, w.version)
  const w2 = ok(t, s.put('k', Buffer.alloc(0), 'text/plain'), 'replace with empty')
  t.equal(w2.existed, true, 'second write replaces')
  const empty = s.get('k')
  t.ok(Buffer.isBuffer(empty?.value) && empty?.value.length === 0, 'an empty value is an empty Buffer')
  t.equal(s.get('absent'), undefined)
  t.equal(s.nodeId, 'n1')
  t.equal(s.currentTerm(), 1)
})

t.test('versions are unique and seq increases, also across two handles on one file', async (t) => {
  const path = tempDb(t)
  const a = open(t, path, 'n1')
  const b = open(t, path, 'n1')
  const versions = new Set<string>()
  let lastSeq = 0
  for (let i = 0; i < 200; i++) {
    const store = i % 2 === 0 ? a : b
    const w = ok(t, store.put(`k${i % 17}`, Buffer.from(`v${i}`), 'text/plain'), `put ${i}`)
    if (w.seq <= lastSeq) t.fail(`seq went from ${lastSeq} to ${w.seq}`)
    lastSeq = w.seq
    versions.add(w.version)
  }
  t.equal(versions.size, 200, '200 writes, 200 distinct versions')
  t.equal(a.position(), lastSeq, 'position is the highest seq')
  t.equal(b.position(), lastSeq, 'both handles agree')
})

t.test('deletes write tombstones', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  ok(t, s.put('k', Buffer.from('v'), 'text/plain'), 'put')
  const d = ok(t, s.delete('k'), 'delete')
  t.equal(d.existed, true, 'deleting a present key')
  t.equal(s.get('k'), undefined, 'gone after delete')
  const d2 = ok(t, s.delete('k'), 'delete again')
  t.equal(d2.existed, false, 'deleting an absent key is fine')
  t.ok(d2.seq > d.seq, 'a repeated delete still bumps seq')
  const d3 = ok(t, s.delete('never'), 'delete a never-written key')
  t.equal(d3.existed, false)
  const changes = s.changesSince(0, 100)
  t.same(changes.map((c) => [c.key, c.deleted]), [['k', true], ['never', true]], 'tombstones are in the change log')
  t.match(s.stats(), { keys: 0, tombstones: 2, position: s.position(), feed: { entries: 4, floor: 0 } }, 'counts, and the change feed: every write')
  const again = ok(t, s.put('k', Buffer.from('back'), 'text/plain'), 're-create')
  t.equal(again.existed, false, 'writing over a tombstone creates')
  t.equal(s.get('k')?.value.toString(), 'back')
})

t.test('conditions are evaluated inside the write', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const created = ok(t, s.put('k', Buffer.from('1'), 'text/plain', { ifNoneMatch: '*' }), 'create-only on absent')
  const again = s.put('k', Buffer.from('2'), 'text/plain', { ifNoneMatch: '*' })
  t.same(again, { ok: false, reason: 'precondition_failed', current: created.version }, 'create-only on present fails')
  const stale = s.put('k', Buffer.from('2'), 'text/plain', { ifMatch: ['n1.1.zzz'] })
  t.same(stale, { ok: false, reason: 'precondition_failed', current: created.version }, 'If-Match with another version fails')
  t.equal(s.get('k')?.value.toString(), '1', 'failed conditions change nothing')
  const positionBefore = s.position()
  ok(t, s.put('k', Buffer.from('3'), 'text/plain', { ifMatch: [created.version] }), 'If-Match with the current version')
  t.equal(s.position(), positionBefore + 1)
  t.same(s.delete('absent', { ifMatch: '*' }), { ok: false, reason: 'precondition_failed', current: undefined }, 'DELETE If-Match * on absent fails')
})

t.test('a retried write with the same request id is answered, not applied again', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const [r1, r2, r3, r4] = [newRequestId(), newRequestId(), newRequestId(), newRequestId()]
  const first = ok(t, s.put('k', Buffer.from('a'), 'text/plain', {}, stampOf(r1, 'k', 'a')), 'first attempt')
  const pos = s.position()
  const retry = ok(t, s.put('k', Buffer.from('a'), 'text/plain', {}, stampOf(r1, 'k', 'a')), 'retry')
  t.equal(retry.replayed, true, 'flagged as replayed')
  t.equal(retry.version, first.version, 'same version')
  t.equal(retry.seq, first.seq, 'same seq')
  t.equal(s.position(), pos, 'nothing new written')
  // A retried conditional create must not fail its own condition.
  const c1 = ok(t, s.put('c', Buffer.from('x'), 'text/plain', { ifNoneMatch: '*' }, stampOf(r2, 'c', 'x', 'text/plain', { ifNoneMatch: '*' })), 'conditional create')
  const c2 = ok(t, s.put('c', Buffer.from('x'), 'text/plain', { ifNoneMatch: '*' }, stampOf(r2, 'c', 'x', 'text/plain', { ifNoneMatch: '*' })), 'retried conditional create')
  t.equal(c2.version, c1.version)
  t.equal(c1.existed, false, 'the first attempt created the key')
  // store.ts promises "answer as the first did": a replayed create must still say
  // created (existed: false), or the shard answers a retried 201 with 200.
  t.equal(c2.existed, c1.existed, 'the replay reports existed as the first attempt did')
  const other = ok(t, s.put('k', Buffer.from('b'), 'text/plain', {}, stampOf(r3, 'k', 'b')), 'a new request id')
  t.equal(other.replayed, false)
  t.not(other.version, first.version)
  const d1 = ok(t, s.delete('k', {}, stampOf(r4, 'k')), 'delete')
  const d2 = ok(t, s.delete('k', {}, stampOf(r4, 'k')), 'retried delete')
  t.equal(d2.replayed, true)
  t.equal(d2.version, d1.version)
})

t.test('a retry is recognised however many writes to the key came after it (issue 15)', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const del = newRequestId()
  ok(t, s.put('k', Buffer.from('v0'), 'text/plain', {}, stampOf(newRequestId(), 'k', 'v0')), 'setup')
  const d1 = ok(t, s.delete('k', {}, stampOf(del, 'k')), 'the delete applies')
  const acked = ok(t, s.put('k', Buffer.from('v47'), 'text/plain', {}, stampOf(newRequestId(), 'k', 'v47')), 'a newer write is acknowledged')
  ok(t, s.put('other', Buffer.from('x'), 'text/plain', {}, stampOf(newRequestId(), 'other', 'x')), 'writes to other keys too')
  const retried = ok(t, s.delete('k', {}, stampOf(del, 'k')), 'the delete is retried')
  t.equal(retried.replayed, true, 'answered from the record')
  t.equal(retried.version, d1.version, 'with the first result')
  t.equal(s.get('k')?.value.toString(), 'v47', 'the acknowledged write is not erased')
  t.equal(s.get('k')?.version, acked.version)
  // And a PUT retried after a newer PUT does not revert the key.
  const put = newRequestId()
  ok(t, s.put('k', Buffer.from('old'), 'text/plain', {}, stampOf(put, 'k', 'old')), 'a put')
  ok(t, s.put('k', Buffer.from('new'), 'text/plain', {}, stampOf(newRequestId(), 'k', 'new')), 'a newer put')
  t.equal(ok(t, s.put('k', Buffer.from('old'), 'text/plain', {}, stampOf(put, 'k', 'old')), 'retry').replayed, true)
  t.equal(s.get('k')?.value.toString(), 'new', 'the retry did not revert the key')
})

t.test('a request id is bound to its operation: reused for another one it is refused', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const id = newRequestId()
  ok(t, s.put('k', Buffer.from('a'), 'text/plain', {}, stampOf(id, 'k', 'a')), 'first use')
  const pos = s.position()
  const reuses: Array<[string, () => WriteOutcome]> = [
    ['another value', () => s.put('k', Buffer.from('b'), 'text/plain', {}, stampOf(id, 'k', 'b'))],
    ['another key', () => s.put('k2', Buffer.from('a'), 'text/plain', {}, stampOf(id, 'k2', 'a'))],
    ['another content type', () => s.put('k', Buffer.from('a'), 'text/html', {}, stampOf(id, 'k', 'a', 'text/html'))],
    ['a precondition', () => s.put('k', Buffer.from('a'), 'text/plain', { ifNoneMatch: '*' }, stampOf(id, 'k', 'a', 'text/plain', { ifNoneMatch: '*' }))],
    ['a delete', () => s.delete('k', {}, stampOf(id, 'k'))]
  ]
  for (const [what, write] of reuses) {
    t.throws(write, { code: 'idempotency_key_reused', status: 422 }, `the same id with ${what}: 422`)
  }
  t.equal(s.position(), pos, 'none of them wrote anything')
  t.equal(s.get('k')?.value.toString(), 'a')
})

t.test('request ids expire with a floor: older ids are refused, never applied blind', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const now = Date.now()
  const old = newRequestId(now - 120_000)
  ok(t, s.put('k', Buffer.from('a'), 'text/plain', {}, stampOf(old, 'k', 'a')), 'an id two minutes old is accepted')
  const fresh = newRequestId(now)
  ok(t, s.put('k', Buffer.from('b'), 'text/plain', {}, stampOf(fresh, 'k', 'b')), 'a fresh one')
  const swept = s.applied.sweep(now, 60_000, 1_000_000)
  t.equal(swept.deleted, 1, 'the sweep forgets the record older than the window')
  t.equal(swept.floor, now - 60_000, 'and raises the floor to the window')
  const pos = s.position()
  t.throws(() => s.put('k', Buffer.from('a'), 'text/plain', {}, stampOf(old, 'k', 'a')), { code: 'request_id_expired', status: 500 }, 'its retry is refused as outcome unknown')
  t.throws(() => s.put('k2', Buffer.from('z'), 'text/plain', {}, stampOf(newRequestId(now - 61_000), 'k2', 'z')), { code: 'request_id_expired' }, 'so is any id issued before the floor')
  t.equal(s.position(), pos, 'nothing written')
  t.equal(ok(t, s.put('k', Buffer.from('b'), 'text/plain', {}, stampOf(fresh, 'k', 'b')), 'replay').replayed, true, 'a record inside the window still answers')
  t.throws(() => s.put('k3', Buffer.from('z'), 'text/plain', {}, stampOf(newRequestId(now + 3_600_000), 'k3', 'z')), { code: 'invalid_header' }, 'an id from an hour ahead is refused (clock)')
  // The count bound: past maxRecords the oldest go, and the floor rises past them.
  for (let i = 0; i < 5; i++) ok(t, s.put(`n${i}`, Buffer.from('x'), 'text/plain', {}, stampOf(newRequestId(now + i), `n${i}`, 'x')), 'fill')
  const capped = s.applied.sweep(now, 60_000, 3)
  t.equal(capped.deleted, 3, 'three records over the cap of three are forgotten')
  t.equal(capped.floor, now + 2, 'the floor passes the newest forgotten id')
  t.throws(() => s.put('n1', Buffer.from('x'), 'text/plain', {}, stampOf(newRequestId(now + 1), 'n1', 'x')), { code: 'request_id_expired' })
  t.equal(ok(t, s.put('n4', Buffer.from('x'), 'text/plain', {}, stampOf(newRequestId(now + 4), 'n4', 'x')), 'kept').existed, true)
})

t.test('logWindow: rows and applied-request records, complete up to `to`', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  // One hot key written 6 times: the log keeps 1 row but all 6 records.
  for (let i = 0; i < 6; i++) ok(t, s.put('hot', Buffer.from(`v${i}`), 'text/plain', {}, stampOf(newRequestId(), 'hot', `v${i}`)), 'write')
  ok(t, s.put('cold', Buffer.from('c'), 'text/plain'), 'a write without an id')
  const all = s.logWindow(0, 100)
  t.equal(all.complete, true)
  t.equal(all.to, 7)
  t.same(all.rows.map((r) => r.seq), [6, 7], 'rows: the compacted log')
  t.same(all.requests.map((r) => r.seq), [1, 2, 3, 4, 5, 6], 'records: one per write with an id')
  const part = s.logWindow(0, 4)
  t.equal(part.complete, false, 'records fill the limit first')
  t.equal(part.to, 4, 'the window ends at the last record that fit')
  t.same(part.rows, [], 'and no row past it')
  const rest = s.logWindow(part.to, 4)
  t.same(rest.requests.map((r) => r.seq), [5, 6])
  t.same(rest.rows.map((r) => r.seq), [6, 7])
  t.equal(rest.to, 7)
  t.equal(rest.complete, true)
})

t.test('node identity', async (t) => {
  const path = tempDb(t)
  const first = new KvStore({ path, nodeId: 'alpha' })
  ok(t, first.put('k', Buffer.from('v'), 'text/plain'), 'put')
  first.close()
  const err = (() => {
    try {
      new KvStore({ path, nodeId: 'beta' }).close()
      return undefined
    } catch (e) {
      return e
    }
  })()
  t.ok(err instanceof StoreError, 'opening with another node id throws StoreError')
  t.equal((err as StoreError).code, 'ERR_NODE_ID_MISMATCH')
  const reopened = open(t, path)
  t.equal(reopened.nodeId, 'alpha', 'no node id given: the stored one')
  t.equal(reopened.get('k')?.value.toString(), 'v', 'data survives a reopen')
  const generated = open(t, tempDb(t))
  t.match(generated.nodeId, /^[0-9a-f]{8}$/, 'a node id is generated when none is given')
  t.throws(() => new KvStore({ path: tempDb(t), nodeId: 'bad id!' }), { code: 'ERR_NODE_ID_INVALID' })
})

t.test('changesSince lists the latest row per key in seq order', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  ok(t, s.put('a', Buffer.from('a1'), 'text/plain'), 'a1') // seq 1
  ok(t, s.put('b', Buffer.from('b1'), 'text/plain'), 'b1') // seq 2
  ok(t, s.put('c', Buffer.from('c1'), 'text/plain'), 'c1') // seq 3
  ok(t, s.put('a', Buffer.from('a2'), 'text/plain'), 'a2') // seq 4
  ok(t, s.delete('b'), 'del b') // seq 5
  const all = s.changesSince(0, 100)
  t.same(all.map((r) => [r.key, r.seq, r.deleted]), [['c', 3, false], ['a', 4, false], ['b', 5, true]])
  t.equal(all[1]?.value.toString(), 'a2', 'the row carries the current value')
  t.equal(all[1]?.contentType, 'text/plain')
  t.same(s.changesSince(3, 100).map((r) => r.key), ['a', 'b'], 'only rows after the given seq')
  t.same(s.changesSince(0, 2).map((r) => r.key), ['c', 'a'], 'limit')
  t.same(s.changesSince(5, 100), [], 'nothing after the position')
  for (let i = 1; i < all.length; i++) t.ok(all[i]!.seq > all[i - 1]!.seq, 'strictly increasing seq')
})

t.test('meta values persist', async (t) => {
  const path = tempDb(t)
  const s = new KvStore({ path, nodeId: 'n1' })
  s.writeMeta('epoch', 7)
  t.equal(s.readMeta('epoch'), 7)
  s.close()
  const r = open(t, path)
  t.equal(r.readMeta('epoch'), 7)
  t.equal(r.readMeta('no-such-meta'), undefined)
})

t.test('applyOps: many ops in one transaction, each applied as put/delete apply it', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const r1 = newRequestId()
  const old = ok(t, s.put('k1', Buffer.from('old'), 'text/plain'), 'setup')
  ok(t, s.put('gone', Buffer.from('x'), 'text/plain'), 'setup')
  const out = s.applyOps([
    { op: 'get', key: 'k1' },
    { op: 'put', key: 'k1', value: Buffer.from('new'), contentType: 'text/x', conditions: { ifMatch: [old.version] }, request: stampOf(r1, 'k1', 'new', 'text/x', { ifMatch: [old.version] }) },
    { op: 'get', key: 'k1' },
    { op: 'put', key: 'k2', value: Buffer.from('v2'), contentType: 'text/plain', conditions: { ifMatch: ['stale'] } },
    { op: 'delete', key: 'gone' },
    { op: 'get', key: 'gone' },
    { op: 'get', key: 'never' },
    { op: 'put', key: 'k3', value: Buffer.from('v3'), contentType: 'text/plain', conditions: { ifNoneMatch: '*' } }
  ])
  t.equal(out.length, 8)
  t.match(out[0], { kind: 'read', found: { version: old.version } }, 'a get before the put sees the old value')
  t.match(out[1], { kind: 'write', outcome: { ok: true, existed: true, replayed: false } })
  const put = out[1]?.kind === 'write' && out[1].outcome.ok ? out[1].outcome : undefined
  t.ok(out[2]?.kind === 'read' && out[2].found?.value.toString() === 'new' && out[2].found.version === put?.version, 'a get after the put sees it')
  t.match(out[3], { kind: 'write', outcome: { ok: false, reason: 'precondition_failed', current: undefined } }, 'a failed precondition is its own outcome')
  t.match(out[4], { kind: 'write', outcome: { ok: true, existed: true } })
  const del = out[4]?.kind === 'write' && out[4].outcome.ok ? out[4].outcome : undefined
  t.same(out[5], { kind: 'read', found: undefined, tombstoneSeq: del?.seq }, 'a deleted key reads as absent with its tombstone seq')
  t.same(out[6], { kind: 'read', found: undefined, tombstoneSeq: undefined })
  t.match(out[7], { kind: 'write', outcome: { ok: true, existed: false } })
  t.equal(s.get('k2'), undefined, 'the refused write changed nothing')
  t.equal(s.get('k3')?.value.toString(), 'v3')
  // The same request id again: answered as the first time, not applied again.
  const again = s.applyOps([{ op: 'put', key: 'k1', value: Buffer.from('new'), contentType: 'text/x', conditions: { ifMatch: [old.version] }, request: stampOf(r1, 'k1', 'new', 'text/x', { ifMatch: [old.version] }) }])
  t.match(again[0], { kind: 'write', outcome: { ok: true, replayed: true, version: put?.version, existed: true } })
  t.same(s.applyOps([]), [])
})

t.test('applyOps: a write the guard refuses rolls back alone; the guard sees the epoch of the transaction', async (t) => {
  const s = open(t, tempDb(t), 'n1')
  const seen: Array<[string, number]> = []
  s.setWriteGuard((key, epoch) => {
    seen.push([key, epoch])
    if (key.startsWith('fenced')) throw new StoreError('ERR_FENCED', `${key} moved away`)
  })
  const before = s.position()
  const out = s.applyOps([
    { op: 'put', key: 'a', value: Buffer.from('1'), contentType: 'text/plain' },
    { op: 'put', key: 'fenced-1', value: Buffer.from('2'), contentType: 'text/plain' },
    { op: 'delete', key: 'fenced-2' },
    { op: 'put', key: 'b', value: Buffer.from('3'), contentType: 'text/plain' }
  ])
  t.match(out[0], { kind: 'write', outcome: { ok: true } })
  t.match(out[1], { kind: 'refused', error: { code: 'ERR_FENCED' } })
  t.match(out[2], { kind: 'refused', error: { code: 'ERR_FENCED' } })
  t.match(out[3], { kind: 'write', outcome: { ok: true } })
  t.same(seen.map(([k]) => k), ['a', 'fenced-1', 'fenced-2', 'b'], 'every write is guarded')
  t.ok(seen.every(([, e]) => e === 0), 'with the installed epoch')
  t.equal(s.get('fenced-1'), undefined)
  t.equal(s.position(), before + 2, 'only the two accepted writes took a seq')
  const seqs = out.flatMap((o) => o.kind === 'write' && o.outcome.ok ? [o.outcome.seq] : [])
  t.same(seqs, [before + 1, before + 2])
})

t.test('applyOps: when the transaction cannot start, it throws and nothing is written; reads need no write lock', async (t) => {
  const path = tempDb(t)
  const s = new KvStore({ path, nodeId: 'n1', synchronous: 'NORMAL', busyTimeoutMs: 50 })
  t.teardown(() => s.close())
  ok(t, s.put('r', Buffer.from('r'), 'text/plain'), 'setup')
  const other = open(t, path, 'n1')
  other.database.prepare('BEGIN IMMEDIATE').run()
  t.teardown(() => { if (other.database.inTransaction) other.database.prepare('ROLLBACK').run() })
  t.throws(() => s.applyOps([
    { op: 'put', key: 'x', value: Buffer.from('1'), contentType: 'text/plain' },
    { op: 'put', key: 'y', value: Buffer.from('2'), contentType: 'text/plain' }
  ]), { code: 'SQLITE_BUSY' })
  const reads = s.applyOps([{ op: 'get', key: 'r' }, { op: 'get', key: 'x' }])
  t.match(reads, [{ kind: 'read', found: { contentType: 'text/plain' } }, { kind: 'read', found: undefined }], 'a gets-only call reads under a held write lock')
  other.database.prepare('ROLLBACK').run()
  t.equal(s.get('x'), undefined)
  t.equal(s.get('y'), undefined)
})
