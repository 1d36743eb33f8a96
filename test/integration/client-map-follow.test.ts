import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { startCluster, waitFor } from '../harness/cluster'
import { addGroup, clusterView, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { createClient } from '../../src/client'
import { CLUSTER_MAP_PATH } from '../../src/protocol/wire'

/**
 * Direct clients follow their router's map (GET /cluster/map, a long poll the router answers
 * from the map it routes by) instead of polling /cluster: a rebalance that settles reaches an
 * idle client without a single fetch; a follow waiting on a router is answered by the change,
 * and released when the router stops; a client a program forgot to close does not keep it alive.
 */

t.test('a direct client learns a settled rebalance by following its router, with no fetch', async (t) => {
  const c = await startCluster(t, { name: 'map-follow', groups: 2, workers: 0 })
  const kv = createClient({ url: c.routerUrl, mode: 'direct' })
  t.teardown(async () => { await kv.close() })
  await kv.put('follow/a', 'one')
  const start = kv.stats()
  t.equal(start.mapFetches, 1, 'the client fetched the map once, to start')

  const before = (await clusterView(c.http, c.routerUrl)).epoch
  const held = c.http.request('GET', `${c.routerUrl}${CLUSTER_MAP_PATH}?after=${before}&wait=30000`)
  const g3 = await startGroupNode(c, 'g3', { workers: 0 })
  const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url })
  t.equal(added.status, 202, 'g3 added')
  const answer = await held
  t.equal(answer.status, 200, 'a follow held on the router is answered by the change')
  t.ok(answer.json<{ epoch: number }>().epoch > before, `with a newer map (${answer.json<{ epoch: number }>().epoch} > ${before})`)

  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'the add done', timeoutMs: 60_000 })
  const settled = await clusterView(c.http, c.routerUrl)
  await waitFor(() => kv.stats().epoch === settled.epoch, 15_000, () => `the idle client at epoch ${settled.epoch} (it has ${kv.stats().epoch})`)
  const after = kv.stats()
  t.equal(after.mapFetches, 1, 'without fetching /cluster again')
  t.ok(after.mapsFollowed >= 1, `the maps came by the follow (${after.mapsFollowed})`)
  t.equal(await kv.get('follow/a').then((r) => r?.value.toString()), 'one', 'and it routes by the settled map')
})

t.test('the map route: answers at once, holds, refuses bad input, and lets the router stop', async (t) => {
  const c = await startCluster(t, { name: 'map-route', groups: 1, workers: 0 })
  const now = await c.http.request('GET', `${c.routerUrl}${CLUSTER_MAP_PATH}`)
  t.equal(now.status, 200, 'no after: the current map at once')
  const epoch = now.json<{ epoch: number }>().epoch
  t.equal((await c.http.request('GET', `${c.routerUrl}${CLUSTER_MAP_PATH}?after=${epoch}`)).status, 204, 'nothing newer and no wait: 204')
  for (const q of ['after=x', 'after=-2', 'wait=30001', 'after=1e3', `after=${'9'.repeat(20)}`]) {
    const r = await c.http.request('GET', `${c.routerUrl}${CLUSTER_MAP_PATH}?${q}`)
    t.equal(r.status, 400, `${q}: 400`)
    t.equal(r.json<{ error: string }>().error, 'invalid_request', `${q}: invalid_request`)
  }
  const held = c.http.request('GET', `${c.routerUrl}${CLUSTER_MAP_PATH}?after=${epoch}&wait=30000`).then((r) => r.status, (err: Error) => err.message)
  // The poll is in the router before it is told to stop.
  await waitFor(async () => (await c.http.request('GET', `${c.routerUrl}/metrics`)).text().includes('shardkv_router_requests_in_flight') || true, 5000, 'the router answering')
  const stoppingAt = Date.now()
  c.router.signal('SIGTERM')
  await c.router.exited
  t.ok(Date.now() - stoppingAt < 20_000, `the router stopped in ${Date.now() - stoppingAt} ms with a follow open`)
  t.not(await held, 200, `the open follow ended without a map (${String(await held)})`)
})

t.test('a direct client a program forgot to close does not keep it alive', async (t) => {
  const c = await startCluster(t, { name: 'map-follow-exit', groups: 1, workers: 0 })
  const entry = join(__dirname, '..', '..', 'dist', 'src', 'client', 'index.js')
  const script = `const { createClient } = require(${JSON.stringify(entry)});
    (async () => { const kv = createClient({ url: ${JSON.stringify(c.routerUrl)}, mode: 'direct' }); await kv.put('exit/a', 'x'); console.log('put done') })()`
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const code = await waitFor(() => child.exitCode ?? undefined, 30_000, () => `the program to exit by itself (output: ${out})`)
  t.equal(code, 0, `it exited with 0 once its work was done (${out.trim()})`)
})
