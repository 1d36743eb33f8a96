import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KvStore } from '../../src/storage/store'
import { FEED_VALUE_BUDGET, type WireFeedReply } from '../../src/protocol/watch'
import { toEvent, withValues } from '../../shards/watch-feed-api'

function openStore (t: tap.Test): KvStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-values-'))
  const store = new KvStore({ path: join(dir, 'n.db'), nodeId: 'n', synchronous: 'NORMAL' })
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  return store
}

function answer (store: KvStore): WireFeedReply {
  const events = store.feed.range(0, store.position(), 100).map(toEvent)
  return { group: 'g1', term: 1, position: store.position(), stored: store.position(), floor: 0, events, next: store.position() }
}

t.test('a feed answer with values: live versions carry their bytes, older ones say superseded', async (t) => {
  const store = openStore(t)
  store.put('a', Buffer.from('one'), 'text/plain')
  store.put('a', Buffer.from('two'), 'text/plain')
  store.put('b', Buffer.from([1, 2, 3]), 'application/octet-stream')
  store.delete('b')
  const a = answer(store)
  withValues(store, a)
  t.same(a.events.map((e) => [e.op, e.key, e.value, e.valueOmitted]), [
    ['put', 'a', undefined, 'superseded'],
    ['put', 'a', Buffer.from('two').toString('base64'), undefined],
    ['put', 'b', undefined, 'superseded'],
    ['delete', 'b', undefined, undefined]
  ])
  t.equal(a.next, store.position(), 'nothing cut')
})

t.test('a feed answer with values ends early past the byte budget, but always carries its first value', async (t) => {
  const store = openStore(t)
  const big = Buffer.alloc(Math.ceil(FEED_VALUE_BUDGET * 0.6), 'x')
  for (const key of ['k1', 'k2', 'k3']) store.put(key, big, 'application/octet-stream')
  const a = answer(store)
  withValues(store, a)
  t.same(a.events.map((e) => e.key), ['k1'], 'a second 0.6-budget value would pass the budget: cut before it')
  t.equal(a.next, (a.events[0]?.seq ?? 0), 'the next read starts right after the first')
  const huge = openStore(t)
  huge.put('h', Buffer.alloc(FEED_VALUE_BUDGET + 10, 'y'), 'application/octet-stream')
  const h = answer(huge)
  withValues(huge, h)
  t.equal(Buffer.from(h.events[0]?.value ?? '', 'base64').length, FEED_VALUE_BUDGET + 10, 'a first value over the budget still goes')
})
