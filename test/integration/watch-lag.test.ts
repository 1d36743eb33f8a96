import t from 'tap'
import { createClient, KvError, type KvClient } from '../../src/client'
import { decodeCursor } from '../../src/protocol/watch'
import { startCluster, waitFor } from '../harness/cluster'
import { addGroup, removeGroup, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { checkWatchHistory, type KeyChain } from '../harness/watch-history'
import { cursorNow, record, seen, type Recorder } from '../harness/watch-writers'

/**
 * Lagging watchers across an add-shard and a remove-shard (issue 12): a stream whose
 * cursor is behind when the groups change must still deliver each key's events in
 * commit order with none skipped — or end with an explicit `cursor_compacted`, never
 * with a silent gap (router/watch-topology.ts). Each phase takes a cursor, writes more
 * than one feed read (500 entries) per group behind it, changes the groups, and only
 * then resumes from the old cursor, so the resumed stream reads the groups' backlogs
 * together with what the rebalance moved:
 * - after an add: the new group (moved copies, newer writes) must wait for the old
 *   groups' backlogs (it goes red when the admission barrier is removed);
 * - during a remove's drain: the leaving group's backlog is delivered before the others'
 *   events of the keys it hands over, and the stream lets go of it without an error;
 * - after the remove finished: the old cursor, which never saw the leaving group's tail,
 *   is refused with cursor_compacted and a restart cursor that works after a re-read.
 */

const WRITERS = 8
const KEYS = 40

/** Writers, one per key set, each key's writes a chain; runs until `stop()`, or `rounds` writes per key. */
function writers (client: KvClient, base: string, chains: Map<string, KeyChain>, rounds: number): { stop: () => void, done: Promise<void>, ops: () => number } {
  let stopped = false
  let ops = 0
  const keys = Array.from({ length: KEYS }, (_, i) => `${base}${i}`)
  for (const k of keys) if (!chains.has(k)) chains.set(k, { writes: [] })
  const one = async (w: number): Promise<void> => {
    const mine = keys.filter((_, i) => i % WRITERS === w)
    for (let n = 0; !stopped && n < rounds * mine.length; n++) {
      const key = mine[n % mine.length] as string
      try {
        chains.get(key)?.writes.push((await client.put(key, `${key}#${n}`)).etag)
      } catch {
        chains.get(key)?.writes.push(null)
      }
      ops++
    }
  }
  const done = Promise.all(Array.from({ length: WRITERS }, async (_, w) => { await one(w) })).then(() => undefined)
  return { stop: () => { stopped = true }, done, ops: () => ops }
}

/** Whether the recorder has seen every key's last acknowledged write. */
function caughtUp (rec: Recorder, chains: ReadonlyMap<string, KeyChain>): boolean {
  const last = new Map<string, string>()
  for (const e of rec.events) if (e.type === 'put') last.set(e.key, e.etag)
  for (const [key, chain] of chains) {
    const acked = chain.writes.filter((w) => w !== null)
    if (acked.length > 0 && !rec.events.some((e) => e.type === 'put' && e.key === key && e.etag === acked[acked.length - 1])) return false
  }
  return true
}

t.test('lagging watchers keep every key\'s order across an add and a remove, or are told to restart', async (t) => {
  const c = await startCluster(t, { name: 'watch-lag', groups: 2, workers: 2, replicas: 0, routerArgs: ['--rebalance-rows-per-sec', '200'] })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await client.close() })
  const prefix = `lag-${Date.now().toString(36)}/`

  // Phase A: a cursor from before the add, resumed after it.
  const before = await cursorNow(client, prefix)
  const chainsA = new Map<string, KeyChain>()
  await writers(client, `${prefix}a/`, chainsA, 40).done
  const g3 = await startGroupNode(c, 'g3')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1 })
  t.equal(added.status, 202, `g3 added: ${added.text.slice(0, 120)}`)
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'add', { timeoutMs: 120_000, what: 'the add done' })
  await writers(client, `${prefix}a/`, chainsA, 3).done
  const late = record(client, prefix, before)
  t.teardown(async () => { late.stop(); await late.done })
  await waitFor(() => late.error !== undefined || caughtUp(late, chainsA), 60_000, 'the resumed stream caught up after the add')
  t.equal(late.error, undefined, 'no error: every group was still there')
  t.ok(late.events.some((e) => e.type !== 'progress' && e.group === 'g3'), 'the added group was read too')
  const problemsA = checkWatchHistory(chainsA, seen(late.events))
  t.same(problemsA.slice(0, 10), [], `resumed after the add: every acknowledged write in order per key (${problemsA.length} problems)`)
  late.stop()
  await late.done

  // Phase B: a cursor from before the remove, resumed while g3 drains.
  await client.putMany(Array.from({ length: 3000 }, (_, i) => ({ key: `pre/${i}`, value: 'p' })))
  const beforeRemove = await cursorNow(client, prefix)
  t.ok(decodeCursor(beforeRemove).g3 !== undefined, 'the cursor names g3')
  const chainsB = new Map<string, KeyChain>()
  await writers(client, `${prefix}b/`, chainsB, 40).done
  const during = writers(client, `${prefix}b/`, chainsB, Number.MAX_SAFE_INTEGER)
  t.teardown(async () => { during.stop(); await during.done })
  // Writes go on through the drain: the keys g3 hands over get newer events elsewhere.
  const removed = await removeGroup(c.http, c.routerUrl, 'g3')
  t.equal(removed.status, 202, `g3 removed: ${removed.text.slice(0, 120)}`)
  await waitForRebalance(c.http, c.routerUrl, (p) => p.kind === 'remove' && p.phase === 'copying', { timeoutMs: 60_000, what: 'g3 draining' })
  const draining = record(client, prefix, beforeRemove)
  t.teardown(async () => { draining.stop(); await draining.done })
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'remove', { timeoutMs: 120_000, what: 'the removal done' })
  const at = during.ops()
  await waitFor(() => during.ops() > at + 100, 60_000, 'writes after the removal')
  during.stop()
  await during.done
  await waitFor(() => draining.error !== undefined || caughtUp(draining, chainsB), 60_000, 'the stream resumed during the drain caught up')
  t.equal(draining.error, undefined, 'no error: g3 was delivered to its end before it left')
  t.ok(draining.events.some((e) => e.type !== 'progress' && e.group === 'g3'), 'g3\'s backlog was delivered')
  const problemsB = checkWatchHistory(chainsB, seen(draining.events))
  t.same(problemsB.slice(0, 10), [], `resumed during the drain: every acknowledged write in order per key (${problemsB.length} problems)`)
  const last = draining.events[draining.events.length - 1]
  const lastCursor = decodeCursor(last?.cursor ?? '')
  t.ok(lastCursor.g3 === undefined || lastCursor.g3.d === 1, 'its cursor has let go of g3 only once delivered to its end')
  draining.stop()
  await draining.done

  // Phase C: the same old cursor after g3 left the map: refused, never silent.
  const stale = record(client, prefix, beforeRemove)
  t.teardown(async () => { stale.stop(); await stale.done })
  await waitFor(() => stale.error !== undefined || stale.progress > 2, 30_000, 'the stale stream answered')
  stale.stop()
  await stale.done
  t.match(stale.error, { code: 'cursor_compacted' }, 'a cursor that never saw g3\'s tail: cursor_compacted')
  const restart = stale.error instanceof KvError ? stale.error.details?.restart : undefined
  t.type(restart, 'string', 'with a restart cursor')
  t.notOk(stale.events.some((e) => e.type !== 'progress'), 'and no event before it')
  // The client re-reads the prefix (here: one key), then watches from restart.
  const probe = `${prefix}b/0`
  await client.get(probe)
  const resumed = record(client, prefix, restart as string)
  t.teardown(async () => { resumed.stop(); await resumed.done })
  const written = await client.put(probe, 'after the restart')
  await waitFor(() => resumed.error !== undefined || resumed.events.some((e) => e.type === 'put' && e.etag === written.etag), 30_000, 'the restarted stream delivers new writes')
  t.equal(resumed.error, undefined, 'the restart cursor is accepted')
  resumed.stop()
  await resumed.done
  // A cursor taken after g3 was delivered to its end resumes without error.
  const fromDone = record(client, prefix, last?.cursor)
  t.teardown(async () => { fromDone.stop(); await fromDone.done })
  await waitFor(() => fromDone.error !== undefined || fromDone.progress > 0, 30_000, 'a stream from the drained cursor')
  t.equal(fromDone.error, undefined, 'a cursor that let go of g3 after its end resumes after g3 left')
  fromDone.stop()
  await fromDone.done
})
