import t from 'tap'
import { createClient, KvError, type WatchEvent } from '../../src/client'
import { startCluster, waitFor } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls } from '../harness/cluster-view'
import { addGroup, removeGroup, waitForRebalance } from '../harness/rebalance'
import { checkWatchHistory } from '../harness/watch-history'
import { seen, startKeyWriters, startWatcher } from '../harness/watch-writers'

/**
 * Change streams (issue 12) against real processes: a watcher of a prefix records every
 * event while writers (one per key, so each key's writes form a known chain) run through
 * a primary SIGKILL; afterwards every key's acknowledged writes must appear in the
 * stream in order, nothing unacknowledged may be a key's final state
 * (test/harness/watch-history.ts), an expiry shows as a `delete` with reason `expired`,
 * and a second watcher started from a mid-stream cursor (direct-mode client) receives
 * exactly the suffix of the first one's events, group by group.
 */

const WRITERS = 4
const KEYS_PER_WRITER = 6

t.test('a watcher sees every acknowledged write in order through a primary SIGKILL, and a resumed one exactly the suffix', async (t) => {
  const c = await startCluster(t, { name: 'watch', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const routed = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  const direct = createClient({ url: c.routerUrl, mode: 'direct', retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await Promise.all([routed.close(), direct.close()]) })
  const prefix = `w-${Date.now().toString(36)}/`

  // Outside the prefix: must never show.
  await routed.put('outside', 'x')
  const watcher = await startWatcher(t, routed, prefix)
  const writers = startKeyWriters(t, routed, prefix, { writers: WRITERS, keysPerWriter: KEYS_PER_WRITER })
  const { chains } = writers
  try {
    await waitFor(() => writers.ops() > 300, 60_000, 'writes under way')
    const g1Replica = replicaUrls(view, 'g1')[0]!
    const killed = await c.killHard(c.byUrl(primaryUrl(view, 'g1')))
    view = await c.waitForView((v) => groupOf(v, 'g1').term === 2 && primaryUrl(v, 'g1') === g1Replica, 'g1\'s replica primary at term 2', 60_000)
    t.comment(`failover: g1 term 2 published ${Date.now() - killed.at} ms after the kill`)
    const after = writers.ops()
    await waitFor(() => writers.ops() > after + 300, 60_000, 'writes after the failover')
  } finally {
    await writers.stop()
  }

  // An expiry is a change too.
  await routed.put(`${prefix}ttl`, 'short', { ttl: 1 })
  await waitFor(() => watcher.events.some((e) => e.type === 'delete' && e.key === `${prefix}ttl` && e.reason === 'expired'), 30_000, 'the expiry as a delete event')
  // Caught up: two progress events after the last write was acknowledged.
  const mark = watcher.progress
  await waitFor(() => watcher.progress >= mark + 2, 30_000, 'progress after the writes')

  const acked = [...chains.values()].reduce((n, ch) => n + ch.writes.filter((w) => w !== null).length, 0)
  const unknown = [...chains.values()].reduce((n, ch) => n + ch.writes.filter((w) => w === null).length, 0)
  t.comment(`${writers.ops()} writes (${acked} acknowledged, ${unknown} unknown), ${watcher.events.length} events`)
  t.ok(acked > 500, 'enough writes')
  t.notOk(watcher.events.some((e) => e.type !== 'progress' && !e.key.startsWith(prefix)), 'only keys under the prefix')
  const problems = checkWatchHistory(chains, seen(watcher.events))
  t.same(problems.slice(0, 20), [], `every acknowledged write seen, in order per key (${problems.length} problems)`)

  // Resume from the middle, through the other client mode: exactly the suffix, group by group.
  const mid = Math.floor(watcher.events.length / 2)
  const cursor = (watcher.events[mid] as WatchEvent).cursor
  const resumed = await startWatcher(t, direct, prefix, cursor)
  await waitFor(() => resumed.progress >= 2, 30_000, 'the resumed stream caught up')
  for (const group of ['g1', 'g2']) {
    const line = (e: WatchEvent): string => e.type === 'progress' ? '' : `${e.type} ${e.key} ${e.etag}`
    const want = watcher.events.slice(mid + 1).filter((e) => e.type !== 'progress' && e.group === group).map(line)
    const got = resumed.events.filter((e) => e.type !== 'progress' && e.group === group).map(line)
    t.same(got, want, `${group}: the resumed stream replays exactly the ${want.length} events after the cursor`)
  }
  resumed.stop()
  watcher.stop()
  await Promise.all([resumed.done.catch(() => undefined), watcher.done.catch(() => undefined)])
})

t.test('a watcher sees every acknowledged write in order while a group is added and removed again', async (t) => {
  const c = await startCluster(t, { name: 'watch-rebalance', groups: 2, replicas: 0, routerArgs: ['--rebalance-rows-per-sec', '300'] })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await client.close() })
  const prefix = `wr-${Date.now().toString(36)}/`
  // Rows for the rebalance to copy (throttled), so the handover lasts while writes go on.
  const preload = await client.putMany(Array.from({ length: 1200 }, (_, i) => ({ key: `${prefix}pre/${i}`, value: 'p' })))
  t.equal(preload.filter((r) => r instanceof KvError).length, 0, 'preloaded')
  const watcher = await startWatcher(t, client, prefix)
  const writers = startKeyWriters(t, client, prefix, { writers: WRITERS, keysPerWriter: KEYS_PER_WRITER })
  const { chains } = writers
  try {
    await waitFor(() => writers.ops() > 200, 60_000, 'writes under way')
    const g3 = await c.addNode('g3', 'g3')
    const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url, weight: 1 })
    t.equal(added.status, 202, `g3 added: ${added.text.slice(0, 120)}`)
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { timeoutMs: 120_000, what: 'the add done' })
    const removed = await removeGroup(c.http, c.routerUrl, 'g3')
    t.equal(removed.status, 202, `g3 removed: ${removed.text.slice(0, 120)}`)
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'remove', { timeoutMs: 120_000, what: 'the removal done' })
    const after = writers.ops()
    await waitFor(() => writers.ops() > after + 100, 60_000, 'writes after the removal')
  } finally {
    await writers.stop()
  }
  const mark = watcher.progress
  await waitFor(() => watcher.progress >= mark + 2, 30_000, 'progress after the writes')
  const acked = [...chains.values()].reduce((n, ch) => n + ch.writes.filter((w) => w !== null).length, 0)
  const moved = watcher.events.filter((e) => e.type === 'put' && e.reason === 'moved').length
  t.comment(`${writers.ops()} writes (${acked} acknowledged), ${watcher.events.length} events (${moved} moved copies)`)
  t.ok(watcher.events.some((e) => e.type !== 'progress' && e.group === 'g3'), 'events came from the added group too')
  const problems = checkWatchHistory(chains, seen(watcher.events))
  t.same(problems.slice(0, 20), [], `every acknowledged write seen, in order per key, across both moves (${problems.length} problems)`)
  watcher.stop()
  await watcher.done.catch(() => undefined)
})

t.test('bad cursors are a 400; a compacted one an explicit cursor_compacted with a restart cursor', async (t) => {
  const c = await startCluster(t, { name: 'watch-compact', groups: 1, replicas: 0, shardArgs: ['--watch-retention-seconds', '1'] })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 5000 })
  t.teardown(async () => { await client.close() })
  const bad = await c.http.request('GET', `${c.routerUrl}/watch?since=not-a-cursor!`)
  t.equal(bad.status, 400)
  t.match(bad.json(), { error: 'invalid_request' })

  const first = client.watch({ prefix: 'c/' })
  const start = await first.next()
  t.equal(start.value?.type, 'progress', 'a stream opens with a progress event')
  const cursor = start.value!.cursor
  await first.return(undefined)
  for (let i = 0; i < 20; i++) await client.put(`c/${i}`, 'v')
  // The feed keeps 1 s: once the sweeper has compacted past the cursor, it is refused.
  await waitFor(async () => {
    try {
      const it = client.watch({ prefix: 'c/', since: cursor })
      for await (const e of it) if (e.type === 'progress') { await it.return(undefined); return false }
      return false
    } catch (err) {
      t.match(err, { code: 'cursor_compacted' })
      t.ok(err instanceof KvError && typeof err.details?.restart === 'string', 'with a restart cursor')
      return true
    }
  }, 30_000, 'cursor_compacted')
})
