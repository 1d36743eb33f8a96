import t from 'tap'
import fc from 'fast-check'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KvStore } from '../../src/storage/store'
import { MigrationStore, type MigratingRow } from '../../src/storage/migration-store'
import { newRequestId } from '../../src/protocol/request-id'
import type { AppliedRequest } from '../../src/storage/applied-requests'

/**
 * The storage side of a rebalance, stores only: what an import inserts, skips and
 * numbers, what a scan selects, and that a refused key leaves nothing behind.
 */

function open (t: { teardown: (fn: () => void) => void }, nodeId: string): { kv: KvStore, migration: MigrationStore } {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-migration-'))
  const kv = new KvStore({ path: join(dir, 'shard.db'), nodeId, synchronous: 'OFF' })
  t.teardown(() => { kv.close(); rmSync(dir, { recursive: true, force: true }) })
  return { kv, migration: new MigrationStore(kv) }
}

function row (key: string, value = key): MigratingRow {
  return { key, value: Buffer.from(value), contentType: 'text/plain', version: `src.1.${key}`, deleted: false, expiresAt: null }
}

function record (key: string): AppliedRequest {
  return { id: newRequestId(), key, issued: Date.now(), fingerprint: 'f', seq: 7, version: `src.1.${key}`, existed: false }
}

t.test('an import inserts absent keys under fresh contiguous seqs, rows then records', async (t) => {
  const { kv, migration } = open(t, 't1')
  kv.put('old', Buffer.from('x'), 'text/plain', {})
  const start = kv.position()
  const requests = [record('a'), record('b')]
  const result = migration.importIfAbsent({ rows: [row('a'), row('b'), row('c')], requests, floor: 5 }, () => undefined)
  t.same(result, { inserted: 3, skipped: 0, requests: 2, maxSeq: start + 5 })
  t.equal(kv.position(), start + 5, 'the counter moved by exactly what was taken')
  const seqs = ['a', 'b', 'c'].map((k) => migration.row(k)?.seq)
  t.same(seqs, [start + 1, start + 2, start + 3])
  t.same(requests.map((q) => kv.applied.has(q.id)), [true, true])
  t.same(kv.feed.range(start, start + 5, 10).map((e) => [e.seq, e.key, e.reason]), [[start + 1, 'a', 'moved'], [start + 2, 'b', 'moved'], [start + 3, 'c', 'moved']])
  t.equal(kv.applied.floor(), 5, 'the floor rose to the sender\'s')
  const next = kv.put('after', Buffer.from('y'), 'text/plain', {})
  t.equal(next.ok && next.seq, start + 6, 'a write after the import takes the next seq')
})

t.test('keys held here (tombstones too), known records and repeats in a batch are skipped', async (t) => {
  const { kv, migration } = open(t, 't2')
  kv.put('live', Buffer.from('newer'), 'text/plain', {})
  kv.put('gone', Buffer.from('x'), 'text/plain', {})
  kv.delete('gone', {})
  const known = record('live')
  migration.importIfAbsent({ rows: [], requests: [known], floor: 0 }, () => undefined)
  const start = kv.position()
  const twice = record('dup')
  const result = migration.importIfAbsent({
    rows: [row('live', 'older'), row('gone', 'older'), row('dup', 'first'), row('dup', 'second')],
    requests: [known, twice, twice],
    floor: 0
  }, () => undefined)
  t.same(result, { inserted: 1, skipped: 3, requests: 1, maxSeq: start + 2 })
  t.equal(kv.get('live')?.value.toString(), 'newer', 'a key written here since the fence wins')
  t.equal(kv.get('gone'), undefined, 'a key deleted here since the fence stays deleted')
  t.equal(kv.get('dup')?.value.toString(), 'first')
  t.same(migration.importIfAbsent({ rows: [row('live')], requests: [known], floor: 0 }, () => undefined), { inserted: 0, skipped: 1, requests: 0, maxSeq: 0 }, 'nothing new: no seq taken')
  t.equal(kv.position(), start + 2)
})

t.test('a key the target refuses rolls the whole batch back', async (t) => {
  const { kv, migration } = open(t, 't3')
  const start = kv.position()
  t.throws(() => migration.importIfAbsent({ rows: [row('ok'), row('nope')], requests: [record('ok')], floor: 9 }, (key) => {
    if (key === 'nope') throw new Error('misdirected')
  }), /misdirected/)
  t.equal(kv.get('ok'), undefined)
  t.equal(kv.position(), start)
  t.equal(kv.applied.floor(), 0)
})

t.test('a scan walks the log in windows: live moving rows, the records of moving keys, to the end', async (t) => {
  const { kv, migration } = open(t, 's1')
  for (let i = 0; i < 10; i++) kv.put(`${i % 2 === 0 ? 'm' : 's'}/${i}`, Buffer.from(`v${i}`), 'text/plain', {})
  kv.delete('m/0', {})
  const moved = record('m/2')
  kv.applied.insertShipped({ ...moved, seq: kv.position() })
  kv.applied.insertShipped({ ...record('s/1'), seq: kv.position() })
  const moving = (key: string): boolean => key.startsWith('m/')
  const seen: string[] = []
  const records: string[] = []
  let after = 0
  let scanned = 0
  for (let round = 0; ; round++) {
    t.ok(round < 20, 'the scan ends')
    const batch = migration.scanMoving(after, 4, moving, 1 << 20)
    t.ok(batch.next > after || batch.done, 'every window moves the cursor')
    seen.push(...batch.rows.map((r) => r.key))
    records.push(...batch.requests.map((q) => q.key))
    scanned += batch.scanned
    after = batch.next
    if (batch.done) break
  }
  t.same(seen, ['m/2', 'm/4', 'm/6', 'm/8'], 'live moving rows in seq order; the tombstone stays')
  t.same(records, ['m/2'], 'the record of a moving key, not of a staying one')
  t.equal(scanned, 10, 'every row examined once')
  t.equal(after, kv.position())
})

t.test('a scan cuts at maxBytes and resumes right after the last row it sent', async (t) => {
  const { kv, migration } = open(t, 's2')
  for (let i = 0; i < 6; i++) kv.put(`m/${i}`, Buffer.alloc(100, 'x'), 'text/plain', {})
  const first = migration.scanMoving(0, 100, () => true, 250)
  t.same(first.rows.map((r) => r.key), ['m/0', 'm/1', 'm/2'])
  t.equal(first.done, false)
  const rest = migration.scanMoving(first.next, 100, () => true, 1 << 20)
  t.same(rest.rows.map((r) => r.key), ['m/3', 'm/4', 'm/5'])
  t.equal(rest.done, true)
})

t.test('any log, any window and byte budget: a full scan sends each live moving row and each moving key\'s record once, and examines every row once', async (t) => {
  const op = fc.record({ kind: fc.constantFrom('put', 'put', 'delete', 'record'), key: fc.constantFrom('m/0', 'm/1', 'm/2', 's/0', 's/1', 's/2') })
  const scanOf = fc.record({ ops: fc.array(op, { maxLength: 40 }), limit: fc.integer({ min: 1, max: 6 }), maxBytes: fc.integer({ min: 1, max: 400 }) })
  let run = 0
  fc.assert(fc.property(scanOf, ({ ops, limit, maxBytes }) => {
    const { kv, migration } = open(t, `p${run++}`)
    const recorded: string[] = []
    for (const o of ops) {
      if (o.kind === 'put') kv.put(o.key, Buffer.alloc(50, o.key), 'text/plain', {})
      else if (o.kind === 'delete') kv.delete(o.key, {})
      else if (kv.position() > 0) { // a record carries the seq of its write: there must be one
        const r = record(o.key)
        kv.applied.insertShipped({ ...r, seq: kv.position() })
        if (o.key.startsWith('m/')) recorded.push(r.id)
      }
    }
    const live = ['m/0', 'm/1', 'm/2'].filter((k) => migration.row(k)?.deleted === false)
    const rows: string[] = []
    const records: string[] = []
    let after = 0
    let scanned = 0
    for (let round = 0; round < 200; round++) {
      const batch = migration.scanMoving(after, limit, (key) => key.startsWith('m/'), maxBytes)
      rows.push(...batch.rows.map((r) => r.key))
      records.push(...batch.requests.map((q) => q.id))
      scanned += batch.scanned
      after = batch.next
      if (batch.done) break
    }
    const total = (kv.database.prepare('SELECT count(*) AS n FROM kv').get() as { n: number }).n
    return rows.slice().sort().join() === live.join() && records.slice().sort().join() === recorded.slice().sort().join() &&
      scanned === total && after === kv.position()
  }), { numRuns: 150 })
  t.pass('every full scan sends what moves, once')
})
