import t from 'tap'
import { join } from 'node:path'
import { sandbox, startShardIn, shardHealth, clusterOutput, waitFor } from '../harness/cluster'

/**
 * A shard node with `--workers 0` (the default): its supervisor serves the data API
 * itself over the one SQLite connection. The process contract is the same as with
 * workers (health, data API, metrics, SIGTERM drain), with one process: /healthz
 * names it as the node and as its only server, and SIGUSR2 has no workers to replace.
 */

t.test('an in-process node: one process serves, drains on SIGTERM and keeps its data', async (t) => {
  const box = sandbox(t, 'in-process')
  t.teardown(() => { if (t.passing() === false) t.comment(clusterOutput(box)) })
  const dataDir = join(box.tmp, 'g1')
  const listening = startShardIn(box, { group: 'g1', nodeId: 'solo', dataDir, port: 0, workers: 0, extraArgs: ['--peer-port', '0'] })
  const p = await listening
  const h = await shardHealth(box, p.url)
  t.match(h, { status: 'ok', nodeId: 'solo', group: 'g1', pid: p.pid, workerPid: p.pid }, 'the node answers from its own process')
  t.same(h.workerPids, [p.pid], 'workerPids: the one process that serves')
  t.ok(Number.isInteger(h.peerPort) && h.peerPort !== 0 && String(h.peerPort) !== new URL(p.url).port, `peer port 0 resolved to its own port (${String(h.peerPort)})`)

  t.equal((await box.http.put(p.url, 'k', 'v1', { 'content-type': 'text/plain' })).status, 201, 'PUT')
  t.equal((await box.http.get(p.url, 'k')).text(), 'v1', 'GET')
  const metrics = (await box.http.request('GET', `${p.url}/metrics`)).text()
  t.match(metrics, /^shardkv_shard_workers 0$/m, 'no worker processes')
  t.match(metrics, /^shardkv_shard_http_requests_total\{method="PUT",status="201"\} 1$/m, 'the node counts what it served')
  t.match(metrics, /^shardkv_shard_position \d+$/m, 'and the supervisor\'s own metrics')

  // SIGUSR2 replaces workers; with none, the node says so and serves on, same process.
  const ignored = p.waitForEvent('rolling-restart-ignored', 30_000)
  p.signal('SIGUSR2')
  t.match(await ignored, { workers: 0 }, 'rolling-restart-ignored logged')
  t.equal((await box.http.get(p.url, 'k')).text(), 'v1', 'still serving after SIGUSR2')
  t.equal((await shardHealth(box, p.url)).pid, p.pid, 'the same process')

  // Writes in flight when SIGTERM arrives are answered (or refused a connection), then exit 0.
  const inflight = Array.from({ length: 40 }, async (_, i) => await box.http.put(p.url, `drain/${i}`, `v${i}`).then((r) => r.status, (err: Error) => err.message))
  await waitFor(async () => (await shardHealth(box, p.url)).position >= 2, 30_000, 'some drain writes to commit')
  p.signal('SIGTERM')
  const results = await Promise.all(inflight)
  t.same(await p.exited, { code: 0, signal: null }, 'exit code 0 after SIGTERM')
  const acknowledged = results.flatMap((r, i) => r === 201 ? [i] : [])
  t.equal(acknowledged.length + results.filter((r) => typeof r === 'string').length, results.length, `each answered 201 or refused: ${JSON.stringify(results.filter((r) => r !== 201)).slice(0, 300)}`)

  const again = await startShardIn(box, { group: 'g1', nodeId: 'solo', dataDir, port: 0, workers: 0 })
  t.equal((await box.http.get(again.url, 'k')).text(), 'v1', 'data survived a clean restart')
  const lost: number[] = []
  for (const i of acknowledged) if ((await box.http.get(again.url, `drain/${i}`)).text() !== `v${i}`) lost.push(i)
  t.same(lost, [], `every acknowledged drain write (${acknowledged.length}) is there`)
})
