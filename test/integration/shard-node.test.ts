import t from 'tap'
import { join } from 'node:path'
import { sandbox, startShardIn, shardHealth, clusterOutput, isAlive, waitUntilDead } from '../harness/cluster'
import { spawnSync } from 'node:child_process'
import { launchShard, LaunchError, entryPoint } from '../../src/local/launcher'
import { SHARD_OPTIONS, ROUTER_OPTIONS } from '../../src/config/options'
import { kvPath } from '../../src/protocol/key'

/**
 * One shard node on its own, without a router: its process contract (listening
 * event, /healthz, SIGTERM drain, refusing bad config and a foreign database).
 */

t.test('a shard node: health, data API, SIGTERM drains and exits 0', async (t) => {
  const box = sandbox(t, 'shard-node')
  t.teardown(() => { if (t.passing() === false) t.comment(clusterOutput(box)) })
  const dataDir = join(box.tmp, 'g1')
  const p = await startShardIn(box, { group: 'g1', nodeId: 'node-a', dataDir, port: 0, workers: 2 })
  t.match(p.url, /^http:\/\/127\.0\.0\.1:\d+$/, `listening event url ${p.url}`)
  t.not(new URL(p.url).port, '0', 'port 0 resolved to a real port')

  const h = await shardHealth(box, p.url)
  t.match(h, { status: 'ok', nodeId: 'node-a', group: 'g1', pid: p.pid })
  t.equal((h as unknown as { service?: string }).service ?? h.role, 'shard', '/healthz names the process kind (service, or role as INTERFACES.md has it)')
  t.equal(h.workerPids.length, 2, 'two workers')
  t.ok(h.workerPids.every((pid) => pid !== p.pid && isAlive(pid)), 'workers are separate live processes')
  t.ok(Number.isInteger(h.position) && Number.isInteger(h.epoch) && Number.isInteger(h.term), 'position, epoch, term are integers')
  // Both workers answer eventually (the cluster module spreads connections).
  const answering = new Set<number>()
  for (let i = 0; i < 40 && answering.size < 2; i++) {
    const res = await box.http.request('GET', `${p.url}/healthz`, { headers: { connection: 'close' } })
    answering.add(res.json<{ workerPid: number }>().workerPid)
  }
  t.equal(answering.size, 2, 'both workers serve requests')

  const put = await box.http.put(p.url, 'a/b', 'v1', { 'content-type': 'text/plain' })
  t.equal(put.status, 201, 'PUT straight to the node')
  t.equal(put.header('x-shardkv-node'), 'node-a', 'x-shardkv-node names the node')
  t.equal((await box.http.get(p.url, 'a/b')).text(), 'v1')
  t.equal((await shardHealth(box, p.url)).position, h.position + 1, 'position advanced by one write')

  // Requests in flight when SIGTERM arrives are answered; then the node exits 0.
  const inflight = Array.from({ length: 40 }, async (_, i) => await box.http.put(p.url, `drain/${i}`, `v${i}`).then((r) => r.status, (err: Error) => err.message))
  await new Promise((resolve) => setTimeout(resolve, 5))
  const workers = (await shardHealth(box, p.url)).workerPids
  p.signal('SIGTERM')
  const results = await Promise.all(inflight)
  const exit = await p.exited
  t.same(exit, { code: 0, signal: null }, 'exit code 0 after SIGTERM')
  const answered = results.filter((r) => r === 201).length
  const refused = results.filter((r) => typeof r === 'string')
  t.equal(answered + refused.length, results.length, `requests were either answered 201 or refused to connect: ${JSON.stringify(results.filter((r) => r !== 201)).slice(0, 300)}`)
  await waitUntilDead(workers, 5000)
  t.pass('all workers exited with the primary')

  // The same data dir comes back with the same identity and data.
  const again = await startShardIn(box, { group: 'g1', nodeId: 'node-a', dataDir, port: 0, workers: 1 })
  t.equal((await box.http.get(again.url, 'a/b')).text(), 'v1', 'data survived a clean restart')
  let lost = 0
  for (let i = 0; i < 40; i++) {
    if (results[i] !== 201) continue
    const r = await box.http.request('GET', again.url + kvPath(`drain/${i}`))
    if (r.status !== 200 || r.text() !== `v${i}`) lost++
  }
  t.equal(lost, 0, `every write acknowledged during the drain (${answered}) is durable`)
})

t.test('a shard node refuses bad configuration and a foreign database', async (t) => {
  const box = sandbox(t, 'shard-config')
  const dataDir = join(box.tmp, 'g1')
  const attempt = async (extraArgs: string[], nodeId?: string): Promise<LaunchError | undefined> => {
    try {
      const p = await launchShard({ dataDir, port: 0, workers: 1, nodeId, extraArgs, readyTimeoutMs: 15_000 })
      box.launched.push(p)
      return undefined
    } catch (err) {
      if (err instanceof LaunchError) return err
      throw err
    }
  }
  const badPort = await attempt(['--port', 'abc'])
  t.ok(badPort !== undefined, 'a non-integer --port is refused')
  t.match(badPort?.output ?? '', /--port must be an integer/, 'with the ConfigError message')
  const badSync = await attempt(['--synchronous', 'sometimes'])
  t.match(badSync?.output ?? '', /--synchronous must be one of/, 'a bad --synchronous is refused with a message')
  const unknown = await attempt(['--no-such-flag'])
  t.ok(unknown !== undefined, 'an unknown flag is refused')

  const first = await attempt([], 'owner-one')
  t.equal(first, undefined, 'starts with node id owner-one')
  const p = box.launched[box.launched.length - 1]!
  await p.stop()
  const mismatch = await attempt([], 'someone-else')
  t.ok(mismatch !== undefined, 'the same data dir under another node id is refused')
  t.match(mismatch?.output ?? '', /owner-one/, 'and the message names the owner')
})

t.test('--help of both processes lists every flag and env var, and exits 0', async (t) => {
  const tables = [['shards', SHARD_OPTIONS], ['router', ROUTER_OPTIONS]] as const
  for (const [part, table] of tables) {
    const res = spawnSync(process.execPath, [entryPoint(part), '--help'], { encoding: 'utf8', timeout: 20_000 })
    t.equal(res.status, 0, `${part} --help exits 0`)
    for (const spec of Object.values(table)) {
      t.match(res.stdout, `--${spec.flag}`, `${part} --help lists --${spec.flag}`)
      t.match(res.stdout, spec.env, `${part} --help lists ${spec.env}`)
    }
  }
})

t.test('/healthz workerPids lists live workers only', async (t) => {
  const box = sandbox(t, 'shard-pids')
  t.teardown(() => { if (t.passing() === false) t.comment(clusterOutput(box)) })
  const p = await startShardIn(box, { group: 'g1', nodeId: 'n1', dataDir: join(box.tmp, 'g1'), port: 0, workers: 2 })
  const before = await shardHealth(box, p.url)
  const victim = before.workerPids[0]!
  process.kill(victim, 'SIGKILL')
  await waitUntilDead([victim], 5000)
  await new Promise((resolve) => setTimeout(resolve, 150))
  // Right after the crash (the replacement may not listen yet), the dead pid must be gone.
  const after = await shardHealth(box, p.url)
  t.notOk(after.workerPids.includes(victim), `workerPids right after worker ${victim} died: ${after.workerPids.join(',')}`)
  t.ok(after.workerPids.every((pid) => isAlive(pid)), 'every listed worker pid is alive')
})

t.test('a crash loop that leaves no worker does not end the node', async (t) => {
  const box = sandbox(t, 'shard-crashloop')
  t.teardown(() => { if (t.passing() === false) t.comment(clusterOutput(box)) })
  const p = await startShardIn(box, { group: 'g1', nodeId: 'n1', dataDir: join(box.tmp, 'g1'), port: 0, workers: 2 })
  t.equal((await box.http.put(p.url, 'k', 'before')).status, 201)
  // Kill every worker three times in a row: more crashes than the restart policy forgives,
  // so replacements are delayed while no worker is left.
  for (let round = 0; round < 3; round++) {
    const deadline = Date.now() + 20_000
    let pids: number[] = []
    while (Date.now() < deadline) {
      try {
        pids = (await shardHealth(box, p.url)).workerPids.filter(isAlive)
        if (pids.length === 2) break
      } catch { /* between workers */ }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.equal(pids.length, 2, `round ${round}: two live workers to kill`)
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await waitUntilDead(pids, 5000)
  }
  const exit = await Promise.race([p.exited, new Promise((resolve) => setTimeout(() => resolve('running'), 8000))])
  t.equal(exit, 'running', `the primary is still running during the restart backoff (got ${JSON.stringify(exit)})`)
  if (exit !== 'running') return
  const deadline = Date.now() + 20_000
  let healthy = false
  while (!healthy && Date.now() < deadline) {
    try {
      const h = await shardHealth(box, p.url)
      healthy = h.workerPids.filter(isAlive).length === 2
    } catch { /* not yet */ }
    if (!healthy) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.ok(healthy, 'two workers serve again after the backoff')
  t.equal((await box.http.get(p.url, 'k')).text(), 'before', 'and the data is there')
})
