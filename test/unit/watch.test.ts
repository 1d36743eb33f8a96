import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeCursor, encodeCursor, judgeFeedCursor, sseEvent, type WireFeedEvent, type WireFeedReply } from '../../src/protocol/watch'
import type { RoutingTable } from '../../src/membership/routing-table'
import { HandoverGate, movingFrom } from '../../router/watch-handover'
import { parseFrames } from '../../src/client/watch'
import { admitStream, resumeCursor } from '../../router/watch-routes'
import { judgeKeyEvents } from '../harness/watch-history'
import { KvStore } from '../../src/storage/store'
import { ReplicaStore } from '../../src/storage/replica-store'
import { MigrationStore } from '../../src/storage/migration-store'

t.test('a cursor round-trips; anything else is a 400', async (t) => {
  const c = { g1: { t: 2, s: 17 }, g2: { t: 1, s: 0 } }
  t.same(decodeCursor(encodeCursor(c)), c)
  t.same(decodeCursor(encodeCursor({})), {})
  const bad = ['not base64!', Buffer.from('[1]').toString('base64url'), Buffer.from('{"g":{"t":-1,"s":0}}').toString('base64url'),
    Buffer.from('{"g":{"t":1}}').toString('base64url'), Buffer.from('nope').toString('base64url'), 'A'.repeat(5000),
    Buffer.from('{"g":{"t":1,"s":1.5}}').toString('base64url'), Buffer.from('null').toString('base64url')]
  for (const b of bad) t.throws(() => decodeCursor(b), { code: 'invalid_request', status: 400 }, `refused: ${b.slice(0, 30)}`)
  t.same(resumeCursor(undefined, encodeCursor(c)), { cursor: c }, 'Last-Event-ID')
  t.same(resumeCursor(encodeCursor({ g1: { t: 1, s: 1 } }), encodeCursor(c)), { cursor: { g1: { t: 1, s: 1 } } }, 'since wins')
  t.same(resumeCursor(encodeCursor(c, 7), undefined), { cursor: c, membership: 7 }, 'the membership count travels in the cursor')
  t.throws(() => decodeCursor(Buffer.from(JSON.stringify({ _m: -1 })).toString('base64url')), { code: 'invalid_request' }, 'a bad membership count is refused')
  t.equal(resumeCursor(undefined, undefined), undefined, 'none: from now')
  t.throws(() => resumeCursor(['a', 'b'], undefined), { code: 'invalid_request' })
})

t.test('feed cursors: compacted before the floor or past the node\'s log', async (t) => {
  const table: Array<[number, number, number, string]> = [
    [10, 0, 20, 'ok'], [0, 0, 0, 'ok'], [20, 0, 20, 'ok'], [4, 5, 20, 'compacted'], [5, 5, 20, 'ok'], [21, 0, 20, 'compacted']
  ]
  for (const [after, floor, position, want] of table) t.equal(judgeFeedCursor(after, floor, position), want, `after ${after}, floor ${floor}, log at ${position}`)
  t.ok(admitStream(0, 1))
  t.notOk(admitStream(1, 1))
})

t.test('Server-Sent Events: written and parsed back', async (t) => {
  const text = sseEvent('put', 'abc', { key: 'k' }) + sseEvent('progress', undefined, { groups: {} }) + 'event: put\nid: x'
  const { frames, rest } = parseFrames(text)
  t.same(frames, [{ event: 'put', id: 'abc', data: '{"key":"k"}' }, { event: 'progress', id: undefined, data: '{"groups":{}}' }])
  t.equal(rest, 'event: put\nid: x', 'an unfinished frame waits for the rest')
})

t.test('the watch history check', async (t) => {
  const chain = { writes: ['a', 'b', 'c'] }
  t.same(judgeKeyEvents(chain, ['a', 'b', 'c']), [])
  t.same(judgeKeyEvents(chain, ['a', 'a', 'b', 'b', 'c', 'c']), [], 'repeats are at-least-once')
  const says = (problems: string[], what: RegExp): boolean => problems.some((p) => what.test(p))
  t.ok(says(judgeKeyEvents(chain, ['a', 'c']), /never seen/), 'a missing write')
  t.ok(says(judgeKeyEvents(chain, ['b', 'a', 'c']), /out of order/), 'reordered')
  t.ok(says(judgeKeyEvents(chain, ['a', 'b', 'c', 'x']), /never acknowledged/), 'an unknown etag without an unknown write')
  t.same(judgeKeyEvents({ writes: ['a', null, 'c'] }, ['a', 'x', 'c']), [], 'an unknown write may show')
  t.ok(says(judgeKeyEvents({ writes: ['a', null, 'c'] }, ['a', 'c', 'x']), /final state/), 'but not as the final state when acknowledged ones came after')
  t.same(judgeKeyEvents({ writes: ['a', null] }, ['a', 'x']), [], 'an unknown last write may be the final state')
})

function openStore (t: tap.Test, name: string): KvStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-feed-'))
  const store = new KvStore({ path: join(dir, `${name}.db`), nodeId: name, synchronous: 'NORMAL' })
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  return store
}

t.test('the change feed keeps every change, ships with replication, and compacts behind a floor', async (t) => {
  const p = openStore(t, 'p')
  for (let i = 0; i < 5; i++) p.put('hot', Buffer.from(`v${i}`), 'text/plain')
  p.delete('hot')
  const feed = p.feed.range(0, p.position(), 100)
  t.same(feed.map((e) => [e.seq, e.deleted]), [[1, false], [2, false], [3, false], [4, false], [5, false], [6, true]], 'every write of a hot key, the delete last')
  t.equal(p.changesSince(0, 100).length, 1, 'while the kv table keeps only the last')

  const r = openStore(t, 'r')
  const window = p.logWindow(0, 3)
  t.equal(window.to, 3, 'a window is cut at its feed limit')
  new ReplicaStore(r).apply(window)
  new ReplicaStore(r).apply(p.logWindow(3, 100))
  t.same(r.feed.range(0, 100, 100), feed, 'a replica holds the same feed, seq for seq')

  t.equal(p.feed.compact(Date.now() + 1), 6, 'compaction deletes what is older than the cutoff')
  t.equal(p.feed.floor(), 6, 'and raises the floor over it')
  new ReplicaStore(r).apply(p.logWindow(6, 100))
  t.equal(r.feed.floor(), 6, 'a replica raises its floor to its primary\'s')

  const target = openStore(t, 't')
  p.put('moving', Buffer.from('x'), 'text/plain')
  new MigrationStore(target).importIfAbsent(new MigrationStore(p).scanMoving(6, 100, () => true, 1 << 20), () => {})
  t.match(target.feed.range(0, 100, 100), [{ key: 'moving', reason: 'moved', deleted: false }], 'an imported key shows in the target\'s feed as moved')
})

t.test('across a rebalance, a target\'s events of moving keys wait for the source\'s feed to pass a barrier read after them', async (t) => {
  // The table as the gate sees it: key "m…" moves from g1 (primary http://g1) to g3; the rest stay.
  const table = { epoch: 5, map: { handover: { previous: [] } }, handoverSourceOf: (key: string) => key.startsWith('m') ? 'http://g1' : undefined } as unknown as RoutingTable
  const groupOfPrimary = new Map([['http://g1', 'g1'], ['http://g3', 'g3']])
  const finished = (): boolean => false
  const ev = (seq: number, key: string): WireFeedEvent => ({ seq, key, op: 'put', etag: `"${seq}"` })
  const reply = (events: WireFeedEvent[], position: number, stored: number, next = position): WireFeedReply => ({ group: '', term: 1, position, stored, floor: 0, events, next })
  t.equal(movingFrom(table, 'm1', 'g3', groupOfPrimary), 'g1')
  t.equal(movingFrom(table, 'm1', 'g1', groupOfPrimary), undefined, 'not moving into its own source')
  t.equal(movingFrom(table, 's1', 'g3', groupOfPrimary), undefined)

  const gate = new HandoverGate()
  gate.nextRound()
  const now = gate.admit(table, 'g3', reply([ev(1, 's1'), ev(2, 'm1'), ev(3, 's2')], 3, 3), groupOfPrimary)
  t.same(now.map((e) => e.seq), [1], 'events before the first moving key go; from it on they wait')
  t.ok(gate.isHeld('g3'))
  t.same(gate.release(table, new Map([['g1', reply([], 100, 100)]]), finished), [], 'not released by a source read of the same round')
  gate.nextRound()
  t.same(gate.release(table, new Map([['g1', reply([], 90, 120)]]), finished), [], 'the next round sets the barrier (120): not passed at 90')
  gate.nextRound()
  const released = gate.release(table, new Map([['g1', reply([], 120, 130)]]), finished)
  t.same(released.map(([g, h]) => [g, h.events.map((e) => e.seq), h.next]), [['g3', [2, 3], 3]], 'released once the source passed the barrier')
  t.notOk(gate.isHeld('g3'))
  t.same(gate.admit(table, 'g3', reply([ev(4, 'm2')], 4, 4), groupOfPrimary).map((e) => e.seq), [4], 'and this handover needs no more barriers')

  const other = new HandoverGate()
  other.nextRound()
  other.admit(table, 'g3', reply([ev(1, 'm1')], 1, 1), groupOfPrimary)
  other.nextRound()
  t.equal(other.release(table, new Map(), finished).length, 0, 'a source that is neither read nor finished holds back')
  t.equal(other.release(table, new Map(), (g) => g === 'g1').length, 1, 'a source delivered to its end (retired) holds nothing back')
})
