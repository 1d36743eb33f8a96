import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createServer } from 'node:net'
import { startCluster, isAlive, sleep, waitUntilDead } from '../harness/cluster'
import { checkPlacement, clusterView, keyRange, preload, readAll } from '../harness/rebalance'
import { processesUsing } from '../harness/local-launcher'

/**
 * The operator scripts (scripts/add-shard.ts, scripts/remove-shard.ts) as an operator
 * runs them: compiled, as child processes, against a running cluster. add-shard starts
 * a detached shard node of its own; every such node is found by PID (from the script's
 * output and /healthz) and stopped at teardown, even when the test fails.
 */

const ROOT = resolve(__dirname, '..', '..')
const ADD = join(ROOT, 'dist', 'scripts', 'add-shard.js')
const REMOVE = join(ROOT, 'dist', 'scripts', 'remove-shard.js')

interface ScriptResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

async function runScript (script: string, args: string[], timeoutMs = 90_000): Promise<ScriptResult> {
  const started = Date.now()
  const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHARDKV_LOG_LEVEL: 'info' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { if (child.pid !== undefined) { try { process.kill(child.pid, 'SIGKILL') } catch {} } }, timeoutMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])))
  clearTimeout(timer)
  return { code, signal, stdout, stderr, ms: Date.now() - started }
}

function show (r: ScriptResult): string {
  return `exit ${String(r.code)}${r.signal === null ? '' : ` (${r.signal})`} after ${r.ms} ms; stderr: ${r.stderr.trim().slice(-600)}`
}

/** The detached node add-shard reports starting: "shard node <id> is healthy at <url> (pid <pid>)". */
function startedNode (r: ScriptResult): { url: string, pid: number } | undefined {
  const m = /shard node \S+ is healthy at (http:\/\/\S+) \(pid (\d+)\)/.exec(r.stderr)
  return m === null ? undefined : { url: m[1]!, pid: Number(m[2]) }
}

async function deadPort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => { typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port')) })
    })
  })
}


t.test('add-shard and remove-shard against a live cluster', async (t) => {
  const c = await startCluster(t, { name: 'rb-scripts', groups: 3, workers: 1 })
  const { http } = c

  // Detached nodes live outside the cluster's sandbox: stop them by PID, then remove their dir.
  const nodeDir = mkdtempSync(join(tmpdir(), 'shardkv-rb-scripts-nodes-'))
  const nodePids = new Set<number>()
  t.teardown(async () => {
    const pids = new Set<number>(nodePids)
    for (const pid of processesUsing(nodeDir)) pids.add(pid)
    for (const pid of pids) { try { process.kill(pid, 'SIGTERM') } catch {} }
    await waitUntilDead([...pids], 8000).catch(() => undefined)
    const left = [...pids, ...processesUsing(nodeDir)].filter(isAlive)
    for (const pid of left) { try { process.kill(pid, 'SIGKILL') } catch {} }
    await waitUntilDead(left, 5000).catch(() => undefined)
    rmSync(nodeDir, { recursive: true, force: true })
  })
  const track = (r: ScriptResult): { url: string, pid: number } | undefined => {
    const n = startedNode(r)
    if (n !== undefined) nodePids.add(n.pid)
    return n
  }

  const keys = keyRange('scripts', 1500)
  await preload(http, c.routerUrl, keys, (k) => `s:${k}`)

  for (const script of [ADD, REMOVE]) {
    const help = await runScript(script, ['--help'])
    t.equal(help.code, 0, `${script.split('/').pop() ?? ''} --help exits 0 (${show(help)})`)
    t.match(help.stdout, /Usage/, '--help prints the usage')
  }

  const dead = `http://127.0.0.1:${await deadPort()}`
  const noRouterAdd = await runScript(ADD, ['--router', dead, '--id', 'g5', '--port', '0', '--data-dir', join(nodeDir, 'g5'), '--workers', '1'])
  track(noRouterAdd)
  t.not(noRouterAdd.code, 0, `add-shard with the router unreachable fails (${show(noRouterAdd)})`)
  t.match(noRouterAdd.stderr, /^add-shard: .*(ECONNREFUSED|unreachable|connect)/m, 'it says it could not reach the router')
  t.notOk(existsSync(join(nodeDir, 'g5')), 'and started no node')
  const noRouterRemove = await runScript(REMOVE, ['--router', dead, '--id', 'g1'])
  t.not(noRouterRemove.code, 0, `remove-shard with the router unreachable fails (${show(noRouterRemove)})`)
  t.match(noRouterRemove.stderr, /^remove-shard: .*(ECONNREFUSED|unreachable|connect)/m, 'it says it could not reach the router')

  const exists = await runScript(ADD, ['--router', c.routerUrl, '--id', 'g1', '--port', '0', '--data-dir', join(nodeDir, 'dup'), '--workers', '1'])
  track(exists)
  t.equal(exists.code, 2, `add-shard with an existing group id exits 2 (${show(exists)})`)
  t.match(exists.stderr, /group g1 already exists/, 'it names the conflict')
  t.notOk(existsSync(join(nodeDir, 'dup')), 'and started no node')
  const unknown = await runScript(REMOVE, ['--router', c.routerUrl, '--id', 'nope'])
  t.equal(unknown.code, 2, `remove-shard of an unknown group exits 2 (${show(unknown)})`)
  t.match(unknown.stderr, /group nope does not exist/, 'it names the unknown group')
  const noId = await runScript(REMOVE, ['--router', c.routerUrl])
  t.equal(noId.code, 2, `remove-shard without --id exits 2 (${show(noId)})`)
  t.match(noId.stderr, /--id is required/, 'it says --id is required')
  const view0 = await clusterView(http, c.routerUrl)
  t.equal(view0.groups.length, 3, 'the failed calls changed nothing: still three groups')
  t.equal(view0.rebalance ?? null, null, 'and no rebalance was started')

  // A request the router refuses after the script started a node: that node must not be left behind.
  const refused = await runScript(ADD, ['--router', c.routerUrl, '--id', 'g7', '--weight', '5000', '--port', '0', '--data-dir', join(nodeDir, 'g7'), '--workers', '1'])
  const orphan = track(refused)
  t.not(refused.code, 0, `add-shard with a weight the router refuses fails (${show(refused)})`)
  t.match(refused.stderr, /weight/, 'it says the weight is wrong')
  await sleep(300)
  t.ok(orphan === undefined || !isAlive(orphan.pid), `no shard node is left running after the failed add (${orphan === undefined ? 'none was started' : `pid ${orphan.pid} at ${orphan.url} is ${isAlive(orphan.pid) ? 'still running' : 'gone'}`})`)
  t.equal((await clusterView(http, c.routerUrl)).groups.length, 3, 'the refused add changed nothing')

  const add = await runScript(ADD, ['--router', c.routerUrl, '--id', 'g4', '--port', '0', '--data-dir', join(nodeDir, 'g4'), '--workers', '1'])
  const node = track(add)
  t.equal(add.code, 0, `add-shard --id g4 exits 0 (${show(add)})`)
  t.match(add.stderr, /rebalance done/, 'it reports the finished rebalance')
  t.ok(node !== undefined, `it reports the node it started (${node === undefined ? '?' : `${node.url}, pid ${node.pid}`})`)
  if (node === undefined) return
  const h = await http.getJson<{ pid: number, workerPids: number[], group: string }>(`${node.url}/healthz`)
  for (const pid of h.workerPids) nodePids.add(pid)
  t.equal(h.pid, node.pid, 'the node answers with the pid the script reported')
  t.equal(h.group, 'g4', 'the node serves g4')
  const added = await clusterView(http, c.routerUrl)
  t.same(added.groups.map((g) => g.id).sort(), ['g1', 'g2', 'g3', 'g4'], '/cluster lists g4')
  t.equal(added.groups.find((g) => g.id === 'g4')?.nodes[0]?.url, node.url, 'with the node the script started')
  t.equal(added.rebalance?.phase, 'done', 'the rebalance is done when add-shard returns')
  const afterAdd = await readAll(http, c.routerUrl, keys)
  t.same(afterAdd.errors, [], 'every key readable after the add')
  t.same(keys.filter((k) => afterAdd.values.get(k) !== `s:${k}`).slice(0, 10), [], 'every key holds its value after the add')
  await checkPlacement(t, http, added, afterAdd.values)

  const remove = await runScript(REMOVE, ['--router', c.routerUrl, '--id', 'g4'])
  t.equal(remove.code, 0, `remove-shard --id g4 exits 0 (${show(remove)})`)
  t.match(remove.stderr, /rebalance done/, 'it reports the finished rebalance')
  t.match(remove.stderr, new RegExp(`stopped node ${node.url.replace(/[.]/g, '\\.')} \\(pid ${node.pid}\\)`), 'it reports stopping the node')
  await waitUntilDead([node.pid, ...h.workerPids], 15_000).catch(() => undefined)
  t.notOk(isAlive(node.pid), `the node's primary ${node.pid} is gone`)
  t.same(h.workerPids.filter(isAlive), [], 'and its workers')
  const removed = await clusterView(http, c.routerUrl)
  t.same(removed.groups.map((g) => g.id).sort(), ['g1', 'g2', 'g3'], 'g4 is no longer in /cluster')
  const afterRemove = await readAll(http, c.routerUrl, keys)
  t.same(afterRemove.errors, [], 'every key readable after the removal')
  t.same(keys.filter((k) => afterRemove.values.get(k) !== `s:${k}`).slice(0, 10), [], 'every key holds its value after the removal')
  await checkPlacement(t, http, removed, afterRemove.values)
})
