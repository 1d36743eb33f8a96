import t from 'tap'
import { createClient, KvError } from '../../src/client'
import { decodeResumePoint } from '../../src/protocol/watch'
import { startCluster, waitFor } from '../harness/cluster'
import { addGroup, removeGroup, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { CLUSTER_MAP_PATH } from '../../src/protocol/wire'
import { cursorNow, record } from '../harness/watch-writers'

/**
 * A group added and removed again entirely while a watcher was away leaves the cursor and
 * the map naming the same groups, though that group held changes the watcher never saw.
 * The map counts every join and leave (ClusterMap.membership), the cursor carries the count
 * it was taken at, and a resume that finds more changes than the two group sets explain is
 * answered `cursor_compacted` with a restart cursor — never a stream with a silent gap.
 * Nor does an idle stream claim to be caught up with a group whose primary does not answer:
 * its progress events name that group `lagging` until it answers again.
 */

t.test('a cursor that missed a group coming and going is told to restart', async (t) => {
  const c = await startCluster(t, { name: 'watch-away', groups: 2, workers: 0 })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await client.close() })
  const prefix = `away-${Date.now().toString(36)}/`
  for (let i = 0; i < 40; i++) await client.put(`${prefix}${i}`, 'before')
  const away = await cursorNow(client, prefix)
  const routerMap = async (): Promise<{ membership?: number, groups: Array<{ id: string }> }> => await c.http.getJson(`${c.routerUrl}${CLUSTER_MAP_PATH}`)
  const before = (await routerMap()).membership ?? 0
  t.equal(decodeResumePoint(away).membership, before, `the cursor carries the map's membership count (${before})`)

  // While the watcher is away: g3 joins, takes keys, is written to, and leaves again.
  const g3 = await startGroupNode(c, 'g3', { workers: 0 })
  t.equal((await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url })).status, 202, 'g3 added')
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'add', { what: 'the add done', timeoutMs: 60_000 })
  for (let i = 0; i < 40; i++) await client.put(`${prefix}${i}`, 'while g3 owned some')
  t.equal((await removeGroup(c.http, c.routerUrl, 'g3')).status, 202, 'g3 removed')
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done' && p.kind === 'remove', { what: 'the remove done', timeoutMs: 60_000 })
  const after = await waitFor(async () => { const m = await routerMap(); return m.groups.length === 2 ? m : undefined }, 30_000, 'the router routing by the map without g3')
  t.same(after.groups.map((g) => g.id).sort(), ['g1', 'g2'], 'the map names the same groups as the cursor')
  t.equal(after.membership, before + 2, 'and counts a join and a leave')

  const stale = record(client, prefix, away)
  // It ends with an error at once, or (were the gap silent) delivers the events it can see.
  await waitFor(() => stale.error !== undefined || stale.events.length > 0, 30_000, 'the resumed stream to answer')
  stale.stop()
  await stale.done
  t.match(stale.error, { code: 'cursor_compacted' }, 'the old cursor is refused with cursor_compacted')
  t.equal(stale.events.length, 0, 'before any event: nothing is delivered with a gap in it')
  const restart = stale.error instanceof KvError ? stale.error.details?.restart : undefined
  t.type(restart, 'string', 'with a restart cursor')
  t.equal(decodeResumePoint(restart as string).membership, before + 2, 'taken at the current count')

  // The client re-reads the prefix (here: one key), then watches from restart.
  t.equal((await client.get(`${prefix}0`))?.value.toString(), 'while g3 owned some', 'the re-read sees the writes the stream could not deliver')
  const resumed = record(client, prefix, restart as string)
  t.teardown(async () => { resumed.stop(); await resumed.done })
  const written = await client.put(`${prefix}0`, 'after the restart')
  await waitFor(() => resumed.error !== undefined || resumed.events.some((e) => e.type === 'put' && e.etag === written.etag), 30_000, 'the restarted stream delivers new writes')
  t.equal(resumed.error, undefined, 'the restart cursor works')
})

t.test('progress never reads as caught up with a group whose primary does not answer', async (t) => {
  const c = await startCluster(t, { name: 'watch-lagging', groups: 2, workers: 0 })
  const client = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await client.close() })
  const progress: Array<{ groups: Record<string, number>, lagging?: string[] }> = []
  const abort = new AbortController()
  const watching = (async () => {
    for await (const e of client.watch({ prefix: 'lagging/', signal: abort.signal })) if (e.type === 'progress') progress.push(e)
  })().catch(() => undefined)
  t.teardown(async () => { abort.abort(); await watching })
  await waitFor(() => progress.some((p) => p.lagging === undefined && Object.keys(p.groups).length === 2), 30_000, 'a progress event with both groups caught up')

  const g2 = c.primaries.find((n) => n.group === 'g2')
  if (g2 === undefined) throw new Error('g2 expected')
  const frozen = await c.freeze(g2)
  t.teardown(() => { c.thaw(frozen.pids) })
  const from = progress.length
  const behind = await waitFor(() => progress.slice(from).find((p) => p.lagging?.includes('g2') === true), 60_000, 'a progress event naming g2 as lagging')
  t.notOk('g2' in behind.groups, 'g2 has no position in it')
  t.ok('g1' in behind.groups, 'g1, which answers, has one')
  c.thaw(frozen.pids)
  const back = progress.length
  await waitFor(() => progress.slice(back).some((p) => p.lagging === undefined && 'g2' in p.groups), 60_000, 'g2 caught up again once it answers')
  t.pass('once g2 answers, progress shows every group caught up')
})
