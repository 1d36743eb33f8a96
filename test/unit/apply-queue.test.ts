import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyReply } from 'fastify'
import { KvStore } from '../../src/storage/store'
import { ReplicaStore, type Shipment } from '../../src/storage/replica-store'
import { ShardKvError } from '../../src/protocol/errors'
import { ApplyQueue, type QueuedShipment } from '../../shards/apply-queue'

/**
 * A replica's group commit of pipelined shipments (shards/apply-queue.ts), on a real
 * store: shipments that follow each other commit together and are answered each with its
 * own position; a batch that no longer continues the replica, or whose term or sender the
 * replica no longer takes, is applied nowhere and every shipment in it is refused.
 */

function replicaStore (t: Test): ReplicaStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-applyq-'))
  const s = new KvStore({ path: join(dir, 'shard.db'), nodeId: 'r1', synchronous: 'OFF' })
  t.teardown(() => { s.close(); rmSync(dir, { recursive: true, force: true }) })
  return new ReplicaStore(s)
}

/** Rows from+1 … to, one key each. */
function shipment (from: number, to: number): Shipment {
  const rows = []
  for (let seq = from + 1; seq <= to; seq++) rows.push({ key: `k${seq}`, value: Buffer.from(`v${seq}`), contentType: 'text/plain', version: `1-${seq}`, seq, deleted: false, expiresAt: null })
  return { rows, requests: [], to, floor: 0, feed: [], feedFloor: 0 }
}

/** A reply that records what was sent (the transport, not the code under test). */
function reply (answers: unknown[]): FastifyReply {
  return { send: (x: unknown) => { answers.push(x) } } as unknown as FastifyReply
}

const queued = (from: number, to: number, answers: unknown[], over: Partial<QueuedShipment> = {}): QueuedShipment =>
  ({ group: 'g1', term: 1, sender: 'http://p', from, shipment: shipment(from, to), reply: reply(answers), ...over })

t.test('shipments that follow each other commit together, each answered with its position', async (t) => {
  const replica = replicaStore(t)
  const q = new ApplyQueue(replica, () => true)
  const answers: unknown[] = []
  q.push(queued(0, 2, answers))
  t.ok(q.continues({ group: 'g1', term: 1, sender: 'http://p', from: 2 }), 'one from where the queue ends continues it')
  t.notOk(q.continues({ group: 'g1', term: 1, sender: 'http://p', from: 1 }), 'one from elsewhere does not')
  t.notOk(q.continues({ group: 'g1', term: 2, sender: 'http://p', from: 2 }), 'nor one of another term')
  t.notOk(q.continues({ group: 'g1', term: 1, sender: 'http://q', from: 2 }), 'nor one of another sender')
  q.push(queued(2, 5, answers))
  q.push(queued(5, 6, answers))
  t.equal(replica.position(), 0, 'nothing applied before the commit')
  q.flush()
  t.same(answers, [{ position: 2 }, { position: 5 }, { position: 6 }], 'each answered with its own position, in order')
  t.equal(replica.position(), 6, 'the replica stands at the last one')
  t.notOk(q.continues({ group: 'g1', term: 1, sender: 'http://p', from: 6 }), 'an empty queue continues nothing')
})

t.test('a batch the replica no longer takes is applied nowhere and refused', async (t) => {
  const replica = replicaStore(t)
  let takes = false
  const q = new ApplyQueue(replica, () => takes)
  const refused: unknown[] = []
  q.push(queued(0, 2, refused))
  q.push(queued(2, 3, refused))
  q.flush()
  t.equal(replica.position(), 0, 'term or sender changed before the commit: nothing applied')
  t.same(refused.map((a) => (a as ShardKvError).code), ['stale_term', 'stale_term'], 'every shipment refused stale_term')

  takes = true
  replica.apply(shipment(0, 4))
  const gap: unknown[] = []
  q.push(queued(0, 2, gap))
  q.flush()
  t.equal(replica.position(), 4, 'the replica moved on meanwhile: nothing applied over it')
  t.equal((gap[0] as ShardKvError).code, 'gap', 'refused as a gap')
  t.equal((gap[0] as ShardKvError).details?.position, 4, 'naming where the replica stands')
})
