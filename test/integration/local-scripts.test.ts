import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sleep, waitUntilDead, isAlive } from '../harness/cluster'
import { describeView } from '../harness/cluster-view'
import { commandLine, localSandbox, ROOT, type LocalSandbox, waitForView } from '../harness/local-launcher'
import { credentialPaths } from '../../src/local/credentials'
import { keyRange, preload, readAll } from '../harness/rebalance'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * The local cluster owns every node in its map: add-shard and add-replica, run against
 * `npm start`, hand their nodes to its launcher (through the nodes file), so Ctrl-C
 * stops them with the rest and the next `npm start` runs them again, with their data.
 * remove-replica stops its node through the launcher, which does not undo it. The
 * cluster runs with credentials (npm start's default): the scripts send the admin token
 * they find in the cluster dir, and the nodes they add get the cluster's credentials
 * files and a peer port, as the nodes npm start runs do.
 */

/** The credentials flags and peer port of the live shard processes whose argv names `dataDir`. */
function nodeFlags (box: LocalSandbox, dataDir: string): Array<Record<string, string | undefined>> {
  return box.processes().map(commandLine).filter((args) => args.includes(dataDir) && args.some((a) => a.endsWith('dist/shards/main.js'))).map((args) => {
    const value = (flag: string): string | undefined => { const i = args.indexOf(flag); return i === -1 ? undefined : args[i + 1] }
    return { secret: value('--cluster-secret-file'), tokens: value('--tokens-file'), peerPort: value('--peer-port') }
  })
}

interface ScriptResult { code: number | null, stderr: string }

async function runScript (name: string, args: string[], timeoutMs = 120_000): Promise<ScriptResult> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', `${name}.js`), ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { try { child.kill('SIGKILL') } catch {} }, timeoutMs)
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stderr }
}


const allServing = (groups: string[]) => (v: ClusterView): boolean =>
  groups.every((id) => v.groups.some((g) => g.id === id)) &&
  v.groups.every((g) => g.nodes.every((n) => n.health === 'up' && (n.role === 'primary' || n.inSync === true)))

t.test('add-shard and add-replica nodes belong to the npm start cluster: stopped by Ctrl-C, started again with their data', async (t) => {
  const box = await localSandbox(t, 'local-scripts', { groups: 1, replicas: 0 })
  const common = ['--router', box.routerUrl, '--cluster-dir', box.dir, '--workers', '1']
  let l = await box.start()
  await l.waitFor(/local cluster is up/, 90_000)
  const keys = keyRange('own', 400)
  await preload(box.http, box.routerUrl, keys, (k) => `v:${k}`)

  const shard = await runScript('add-shard', [...common, '--id', 'g2'])
  t.equal(shard.code, 0, `add-shard exits 0: ${shard.stderr.slice(-500)}`)
  t.match(shard.stderr, /shard node g2 is healthy at http:\/\/127\.0\.0\.1:\d+ \(pid \d+\), supervised by the launcher/, 'the launcher started g2')
  t.match(l.output(), /g2 was added to the nodes file: starting it/, 'the launcher says so')
  const replica = await runScript('add-replica', [...common, '--group', 'g1'])
  t.equal(replica.code, 0, `add-replica exits 0: ${replica.stderr.slice(-500)}`)
  const replicaUrl = /replica node g1-r1 is healthy at (http:\/\/\S+)/.exec(replica.stderr)?.[1]
  t.ok(replicaUrl, `the launcher started g1-r1 at ${String(replicaUrl)}`)
  let v = await waitForView(box, allServing(['g1', 'g2']), 'g1 (with its new replica in sync) and g2 serving', 60_000)
  t.pass(describeView(v))
  const more = keyRange('own2', 200)
  await preload(box.http, box.routerUrl, more, (k) => `w:${k}`)
  const nodesFile = JSON.parse(readFileSync(join(box.dir, 'nodes.json'), 'utf8')) as { nodes: Array<{ name: string, dataDir: string, peerPort?: number }> }
  t.same(nodesFile.nodes.map((n) => n.name).sort(), ['g1', 'g1-r1', 'g2'], 'the nodes file lists every node')
  const creds = credentialPaths(box.dir)
  for (const n of nodesFile.nodes.filter((e) => e.name !== 'g1')) {
    t.ok(Number.isInteger(n.peerPort), `${n.name}, added by a script, has a peer port in the nodes file (${String(n.peerPort)})`)
    const flags = nodeFlags(box, n.dataDir)
    t.ok(flags.length >= 1, `${n.name} runs`)
    t.same([...new Set(flags.map((f) => JSON.stringify(f)))], [JSON.stringify({ secret: creds.clusterSecretFile, tokens: creds.tokensFile, peerPort: String(n.peerPort) })], `${n.name} runs with the cluster's credentials files and its peer port`)
  }

  const pids = box.processes()
  t.equal(await box.interrupt(l), 0, 'Ctrl-C: the launcher exits 0')
  await waitUntilDead(pids, 15_000).catch(() => undefined)
  t.same(pids.filter(isAlive), [], `none of the ${pids.length} processes is left (the added nodes included)`)
  t.same(box.processes(), [], 'nothing names the cluster dir')

  // Started again with the router and the coordinator as processes (the first start ran them as threads):
  // the same data dir serves either way, and the router below can be SIGKILLed on its own.
  l = await box.start(['--processes'])
  await l.waitFor(/local cluster is up \(2 groups, 3 shard nodes\)/, 90_000)
  t.pass('npm start again runs the three nodes of the nodes file')
  v = await waitForView(box, allServing(['g1', 'g2']), 'every group serving after the restart', 60_000)
  t.pass(describeView(v))
  const read = await readAll(box.http, box.routerUrl, [...keys, ...more])
  t.same(read.errors, [], 'every key readable')
  t.same([...keys, ...more].filter((k) => read.values.get(k) !== (keys.includes(k) ? `v:${k}` : `w:${k}`)).slice(0, 10), [], 'every key written before reads back')

  // The router is supervised too: SIGKILLed, it comes back on its port with its persisted map.
  const state = JSON.parse(readFileSync(join(box.dir, 'launcher.json'), 'utf8')) as { nodes: Record<string, { pid: number | null }> }
  const routerPid = state.nodes.router?.pid as number
  process.kill(routerPid, 'SIGKILL')
  await l.waitFor(/router restarted \(pid \d+\)/, 30_000)
  v = await waitForView(box, allServing(['g1', 'g2']), 'every group serving after the router restart', 60_000)
  const again = await readAll(box.http, box.routerUrl, keys.slice(0, 50))
  t.same(again.errors, [], `the router (pid ${routerPid}) was SIGKILLed and restarted: keys read back through it`)
  t.notOk(isAlive(routerPid), 'the old router is gone')

  // replace-node (a replica whose disk is gone): out of the group, a fresh replica in its place.
  rmSync(join(box.dir, 'g1-r1'), { recursive: true, force: true })
  const replaced = await runScript('replace-node', [...common, '--group', 'g1', '--url', replicaUrl as string])
  t.equal(replaced.code, 0, `replace-node exits 0: ${replaced.stderr.slice(-600)}`)
  t.match(replaced.stderr, /launcher stopped g1-r1/, 'the launcher stopped the old replica')
  const fresh = /replica node (g1-r\d+) is healthy at (http:\/\/\S+)/.exec(replaced.stderr)
  const freshName = fresh?.[1] as string
  const freshUrl = fresh?.[2] as string
  t.ok(fresh !== null && freshUrl !== replicaUrl, `and started a fresh one, ${freshName} at ${freshUrl}`)
  v = await waitForView(box, (x) => allServing(['g1', 'g2'])(x) && x.groups.find((g) => g.id === 'g1')?.nodes.some((n) => n.url === freshUrl && n.inSync === true) === true, `${freshName} in sync`, 60_000)
  t.notOk(v.groups.some((g) => g.nodes.some((n) => n.url === replicaUrl)), `the old replica left the map: ${describeView(v)}`)

  // remove-replica stops the node through the launcher, which does not restart it.
  const removed = await runScript('remove-replica', [...common.slice(0, 4), '--group', 'g1', '--url', freshUrl])
  t.equal(removed.code, 0, `remove-replica exits 0: ${removed.stderr.slice(-500)}`)
  t.match(removed.stderr, new RegExp(`launcher stopped ${freshName}`), `the launcher stopped ${freshName}`)
  await sleep(3000)
  t.notMatch(l.output(), /g1-r[12] restarted|g1-r[12] .*exited unexpectedly/, 'and restarted neither replica')
  t.notOk(box.processes().some((pid) => /g1-r[12]/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))), 'no replica process runs')
  const finalNodes = JSON.parse(readFileSync(join(box.dir, 'nodes.json'), 'utf8')) as { nodes: Array<{ name: string }> }
  t.same(finalNodes.nodes.map((n) => n.name).sort(), ['g1', 'g2'], 'the nodes file has only g1 and g2')

  // remove-shard drains g2, then the launcher stops its node for good.
  const drained = await runScript('remove-shard', [...common.slice(0, 4), '--id', 'g2'])
  t.equal(drained.code, 0, `remove-shard exits 0: ${drained.stderr.slice(-500)}`)
  t.match(drained.stderr, /launcher stopped g2/, 'the launcher stopped g2')
  await sleep(2000)
  t.notMatch(l.output(), /g2 restarted|g2 .*exited unexpectedly/, 'and did not restart it')
  const afterDrain = await readAll(box.http, box.routerUrl, [...keys, ...more])
  t.same(afterDrain.errors, [], 'every key readable from g1 alone')
  t.same([...keys, ...more].filter((k) => afterDrain.values.get(k) !== (keys.includes(k) ? `v:${k}` : `w:${k}`)).slice(0, 10), [], 'with its value')

  const last = box.processes()
  t.equal(await box.interrupt(l), 0, 'Ctrl-C again')
  await waitUntilDead(last, 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')

  // By hand: restart-node starts a node from its data dir alone (port and group from launch.json).
  const g2 = JSON.parse(readFileSync(join(box.dir, 'g2', 'launch.json'), 'utf8')) as { port: number, group: string }
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', 'restart-node.js'), '--data-dir', join(box.dir, 'g2')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  let h: { status: string, group: string } | undefined
  for (let i = 0; i < 150 && h?.status !== 'ok'; i++) {
    await sleep(200)
    h = await box.http.getJson<{ status: string, group: string }>(`http://127.0.0.1:${g2.port}/healthz`).catch(() => undefined)
  }
  t.equal(h?.group, 'g2', `restart-node brought g2 back on port ${g2.port}`)
  const restarted = nodeFlags(box, join(box.dir, 'g2'))
  t.match(restarted[0], { secret: creds.clusterSecretFile, tokens: creds.tokensFile, peerPort: /^\d+$/ }, 'with its credentials files and peer port from launch.json')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'and stops it on SIGTERM')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'nothing left')
})
