import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KvStore, type WriteOutcome } from '../../src/storage/store'
import { ReplicaStore } from '../../src/storage/replica-store'
import { MigrationStore } from '../../src/storage/migration-store'
import { fingerprintOf, newRequestId, parseRequestId, type RequestStamp } from '../../src/protocol/request-id'
import { shipmentFromWire, transferFromWire, transferToWire, changeToWire } from '../../src/protocol/log-codec'

/**
 * The record of applied request ids travels with the data: a promoted replica and a
 * key's new owner after a rebalance recognise a retry of a write the old node applied,
 * however many writes to the key came after it (issue 15). Stores only, no processes:
 * what the shipper, the rebalancer and copy on touch do, through the same wire codecs.
 */

function store (t: tap.Test, nodeId: string): KvStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-applied-'))
  const s = new KvStore({ path: join(dir, 'shard.db'), nodeId, synchronous: 'OFF' })
  t.teardown(() => { s.close(); rmSync(dir, { recursive: true, force: true }) })
  return s
}

function put (key: string, value: string, id = newRequestId()): { stamp: RequestStamp, run: (s: KvStore) => WriteOutcome } {
  const parsed = parseRequestId(id)
  if (parsed === undefined) throw new Error('bad id')
  const stamp = { ...parsed, fingerprint: fingerprintOf({ op: 'put', key, value: Buffer.from(value), contentType: 'text/plain', conditions: {} }) }
  return { stamp, run: (s) => s.put(key, Buffer.from(value), 'text/plain', {}, stamp) }
}

function del (key: string): { run: (s: KvStore) => WriteOutcome } {
  const parsed = parseRequestId(newRequestId())
  if (parsed === undefined) throw new Error('bad id')
  const stamp = { ...parsed, fingerprint: fingerprintOf({ op: 'delete', key, conditions: {} }) }
  return { run: (s) => s.delete(key, {}, stamp) }
}

/** Ships everything after the replica's position, in windows of `limit`, as the shipper does. */
function ship (primary: KvStore, replica: ReplicaStore, limit: number): number {
  let shipments = 0
  for (;;) {
    const from = replica.position()
    const w = primary.logWindow(from, limit)
    const body = JSON.parse(JSON.stringify({ rows: w.rows.map(changeToWire), requests: w.requests, floor: w.floor })) as Record<string, unknown>
    replica.apply(shipmentFromWire(body, w.to))
    shipments++
    if (w.complete) return shipments
  }
}

t.test('a promoted replica recognises every id its primary applied, though the rows were overwritten', async (t) => {
  const primary = store(t, 'p1')
  const replicaNode = store(t, 'r1')
  const replica = new ReplicaStore(replicaNode)
  const deletes = Array.from({ length: 5 }, () => del('hot'))
  const puts: Array<ReturnType<typeof put>> = []
  for (let i = 0; i < 5; i++) {
    const p = put('hot', `v${i}`)
    puts.push(p)
    p.run(primary)
    deletes[i]?.run(primary)
  }
  const acked = put('hot', 'acked')
  acked.run(primary)
  primary.applied.raiseFloor(Date.now() - 60_000)
  const shipments = ship(primary, replica, 3)
  t.ok(shipments > 2, `shipped in ${shipments} windows of 3 (11 records, 1 row)`)
  t.equal(replica.position(), primary.position(), 'the replica stands where the primary does')
  t.equal(replicaNode.applied.floor(), primary.applied.floor(), 'and took the primary\'s floor')
  // Promoted: its writes under a new term; every retry answered from the record.
  replica.adoptTerm(2)
  const before = replicaNode.position()
  for (const [i, p] of puts.entries()) {
    const out = p.run(replicaNode)
    t.match(out, { ok: true, replayed: true }, `put ${i} retried on the new primary: replayed`)
  }
  for (const [i, d] of deletes.entries()) t.match(d.run(replicaNode), { ok: true, replayed: true }, `delete ${i} retried: replayed`)
  t.match(acked.run(replicaNode), { ok: true, replayed: true }, 'the acknowledged write retried: replayed')
  t.equal(replicaNode.position(), before, 'no retry wrote anything')
  t.equal(replicaNode.get('hot')?.value.toString(), 'acked', 'the key holds the acknowledged write')
  t.match(put('hot', 'fresh').run(replicaNode), { ok: true, replayed: false }, 'a new id is a new write')
})

t.test('a moving key\'s records go with it: scan + import, and copy on touch', async (t) => {
  const source = store(t, 's1')
  const target = store(t, 't1')
  const sourceMigration = new MigrationStore(source)
  const targetMigration = new MigrationStore(target)
  const moving = (key: string): boolean => key.startsWith('m/')
  const del1 = del('m/deleted')
  put('m/deleted', 'x').run(source)
  del1.run(source)
  const overwritten = put('m/live', 'old')
  overwritten.run(source)
  put('m/live', 'new').run(source)
  const stays = put('s/stays', 'here')
  stays.run(source)
  source.applied.raiseFloor(Date.now() - 1000)

  let after = 0
  let requests = 0
  for (;;) {
    const batch = sourceMigration.scanMoving(after, 2, moving, 1 << 20)
    const transfer = transferFromWire(JSON.parse(JSON.stringify(transferToWire(batch))) as Record<string, unknown>)
    requests += transfer.requests.length
    targetMigration.importIfAbsent(transfer, () => undefined)
    after = batch.next
    if (batch.done) break
  }
  t.equal(requests, 4, 'the four records of moving keys moved (tombstoned key included), not the staying key\'s')
  t.equal(target.get('m/live')?.value.toString(), 'new', 'the live row moved')
  t.equal(target.get('m/deleted'), undefined, 'the tombstone did not')
  t.equal(target.applied.floor(), source.applied.floor(), 'the floor came along')
  // Newer writes at the new owner; the old retries must not undo them.
  put('m/deleted', 'newer').run(target)
  put('m/live', 'newest').run(target)
  t.match(del1.run(target), { ok: true, replayed: true }, 'the retried DELETE is recognised')
  t.match(overwritten.run(target), { ok: true, replayed: true }, 'the retried overwritten PUT is recognised')
  t.equal(target.get('m/deleted')?.value.toString(), 'newer', 'nothing erased')
  t.equal(target.get('m/live')?.value.toString(), 'newest', 'nothing reverted')
  t.match(stays.run(target), { ok: true, replayed: false }, 'a key that did not move brought no record')

  // Copy on touch of one key: its row (insert-if-absent) and its records.
  const touched = put('m/touched', 'a')
  touched.run(source)
  t.same(sourceMigration.keyTransfer('m/touched', newRequestId()).requests, [], 'an unknown id: no record')
  t.same(sourceMigration.keyTransfer('m/other', touched.stamp.id).requests, [], 'an id of another key: no record')
  const one = transferFromWire(JSON.parse(JSON.stringify(transferToWire(sourceMigration.keyTransfer('m/touched', touched.stamp.id)))) as Record<string, unknown>)
  t.equal(one.rows.length, 1)
  t.equal(one.requests.length, 1)
  const imported = targetMigration.importIfAbsent(one, () => undefined)
  t.same([imported.inserted, imported.requests], [1, 1])
  t.same(targetMigration.importIfAbsent(one, () => undefined), { inserted: 0, skipped: 1, requests: 0, maxSeq: 0 }, 'a second copy changes nothing')
  t.match(touched.run(target), { ok: true, replayed: true })
})

t.test('hostile transfers and shipments are refused whole', async (t) => {
  const good = { id: newRequestId(), key: 'k', issued: Date.now(), fingerprint: 'f', seq: 1, version: 'n.1.1', existed: false }
  const bad: Array<[string, unknown]> = [
    ['not an array', 'x'],
    ['a bad id', [{ ...good, id: 'nope' }]],
    ['a negative seq', [{ ...good, seq: -1 }]],
    ['no version', [{ ...good, version: '' }]],
    ['existed not a boolean', [{ ...good, existed: 1 }]],
    ['a huge fingerprint', [{ ...good, fingerprint: 'f'.repeat(65) }]]
  ]
  for (const [what, requests] of bad) {
    t.throws(() => transferFromWire({ rows: [], requests, floor: 0 }), { code: 'invalid_request' }, `transfer: ${what}`)
    t.throws(() => shipmentFromWire({ rows: [], requests, floor: 0 }, 5), { code: 'invalid_request' }, `shipment: ${what}`)
  }
  t.throws(() => shipmentFromWire({ rows: [], requests: [{ ...good, seq: 9 }], floor: 0 }, 5), { code: 'invalid_request' }, 'a record past the shipment\'s `to`')
  t.throws(() => transferFromWire({ rows: [], requests: [], floor: -3 }), { code: 'invalid_request' }, 'a negative floor')
})
