import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { waitUntilDead } from '../harness/cluster'
import { commandLine, localSandbox, type LocalSandbox } from '../harness/local-launcher'
import { credentialPaths } from '../../src/local/credentials'
import { readLauncherState, readNodesFile } from '../../src/local/nodes-file'
import { HttpClient } from '../harness/http'
import { waitFor } from '../harness/cluster-nodes'
import { INTERNAL_COORDINATOR } from '../../src/protocol/wire'

/**
 * Secure by default (issue 8): the first `npm start` makes the cluster secret, the tokens
 * file and an admin token in its data dir (0600), prints the token once with its path,
 * and gives the files and a peer port to every process; a restart keeps them and prints
 * only the path. `--insecure` makes and gives none. (Enforcement comes with the peer and
 * client-auth work; this checks what is made and handed over, and that the token works.)
 */

/** The value after `flag` on each shardkv process's command line (coordinator, router, nodes, workers), by pid. */
function flagValues (box: LocalSandbox, flag: string): Map<number, string | undefined> {
  const out = new Map<number, string | undefined>()
  for (const pid of box.processes()) {
    const args = commandLine(pid)
    if (!args.some((a) => /dist\/(router|coordinator|shards)\/main\.js$/.test(a))) continue
    const i = args.indexOf(flag)
    out.set(pid, i === -1 ? undefined : args[i + 1])
  }
  return out
}

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)

// With --processes, so that what each part is handed shows on its command line (threads: below).
t.test('npm start makes the credentials once, keeps them across restarts and hands them to every process', async (t) => {
  const box = await localSandbox(t, 'creds', { groups: 2, replicas: 1 })
  const paths = credentialPaths(box.dir)
  let l = await box.start(['--processes'])
  await l.waitFor(/local cluster is up/, 90_000)
  for (const path of [paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile]) t.equal(mode(path), '600', `${path} is mode 0600`)
  const token = readFileSync(paths.adminTokenFile, 'utf8').trim()
  t.match(token, /^skv_[A-Za-z0-9_-]{43}$/, 'the admin token has the plan\'s format')
  t.equal(l.output().split(token).length - 1, 1, 'the first start prints it once')
  t.match(l.output(), `kept in ${paths.adminTokenFile}`, 'with the file that holds it')
  t.match(l.output(), `-H "Authorization: Bearer $(cat ${paths.adminTokenFile})"`, 'and how to send it with curl')
  const tokens = JSON.parse(readFileSync(paths.tokensFile, 'utf8')) as unknown
  t.same(tokens, { tokens: [{ name: 'admin', sha256: createHash('sha256').update(token).digest('hex'), roles: ['admin', 'read', 'write'] }] }, 'tokens.json: the admin token\'s hash, all roles')

  const secrets = flagValues(box, '--cluster-secret-file')
  t.ok(secrets.size >= 5, `coordinator, router and 4 nodes: ${secrets.size} processes`)
  t.same([...new Set(secrets.values())], [paths.clusterSecretFile], 'every process has --cluster-secret-file')
  t.same([...new Set(flagValues(box, '--tokens-file').values())], [paths.tokensFile], 'and --tokens-file')
  const file = readNodesFile(box.dir)
  t.same(file?.nodes.map((n) => n.peerPort), file?.nodes.map((n) => n.port + 10_000), 'nodes.json: each node\'s peer port is its port + 10000')
  t.equal(file?.router?.peerPort, box.routerPort + 10_000, 'and the coordinator\'s (under "router": it served the control plane before the split)')
  // The router has no peer listener: only the coordinator and the nodes take --peer-port.
  const peerPorts = new Set([...flagValues(box, '--peer-port').values()].filter((p) => p !== undefined))
  t.same([...peerPorts].sort(), [box.routerPort, ...(file?.nodes.map((n) => n.port) ?? [])].map((p) => String(p + 10_000)).sort(), 'the coordinator and each node run with their peer port')
  const launch = JSON.parse(readFileSync(join(box.dir, 'g1', 'launch.json'), 'utf8')) as Record<string, unknown>
  t.match(launch, { peerPort: box.basePort + 10_000, clusterSecretFile: paths.clusterSecretFile, tokensFile: paths.tokensFile }, 'launch.json records them for restart-node')

  t.equal((await box.http.put(box.routerUrl, 'creds/a', 'one', { 'content-type': 'text/plain' })).status, 201, 'a PUT with the token')
  const before = [paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile].map((p) => readFileSync(p, 'utf8'))
  t.equal(await box.interrupt(l), 0, 'Ctrl-C')

  l = await box.start(['--processes'])
  await l.waitFor(/local cluster is up/, 90_000)
  t.notMatch(l.output(), token, 'a restart does not print the token')
  t.match(l.output(), `Admin token: in ${paths.adminTokenFile}.`, 'only where it is')
  t.same([paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile].map((p) => readFileSync(p, 'utf8')), before, 'the files are kept as they were')
  t.same([paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile].map(mode), ['600', '600', '600'], 'still 0600')
  t.same([...new Set([...flagValues(box, '--peer-port').values()].filter((p) => p !== undefined))].sort(), [...peerPorts].sort(), 'the same peer ports')
  t.equal((await box.http.get(box.routerUrl, 'creds/a')).text(), 'one', 'the key reads back with the same token')
  t.equal(await box.interrupt(l), 0, 'Ctrl-C')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')
})

t.test('npm start -- --insecure makes no credentials and gives none', async (t) => {
  const box = await localSandbox(t, 'insecure', { groups: 1, replicas: 0 })
  const l = await box.start(['--insecure'])
  await l.waitFor(/local cluster is up/, 90_000)
  t.match(l.output(), /--insecure: no cluster secret, no client tokens/, 'it says so')
  t.match(l.output(), /Credentials: none \(--insecure\)/, 'in the summary too')
  const paths = credentialPaths(box.dir)
  t.same([paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile].filter(existsSync), [], 'no credentials file')
  // The router and the coordinator are threads of the launcher here: the node is the one process.
  const secrets = flagValues(box, '--cluster-secret-file')
  t.equal(secrets.size, 2, `the node's supervisor and worker: ${secrets.size} processes`)
  t.same([...new Set(secrets.values())], [undefined], 'no process has --cluster-secret-file')
  t.same([...new Set(flagValues(box, '--tokens-file').values())], [undefined], 'nor --tokens-file')
  t.same([...new Set(flagValues(box, '--peer-port').values())], [String(box.basePort + 10_000)], 'the node has its peer port')
  t.equal((await box.http.put(box.routerUrl, 'open/a', 'one')).status, 201, 'a PUT without a token')
  t.equal(await box.interrupt(l), 0, 'Ctrl-C')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')
})

t.test('npm start runs the router and the coordinator as threads of the launcher, secured like processes', async (t) => {
  const box = await localSandbox(t, 'threads', { groups: 1, replicas: 0 })
  const l = await box.start()
  await l.waitFor(/local cluster is up/, 90_000)
  const parts = box.processes().map((pid) => commandLine(pid).find((a) => /dist\/(router|coordinator|shards)\/main\.js$/.test(a)))
  t.same([...new Set(parts.filter((a) => a !== undefined).map((a) => a?.replace(/.*dist\//, '')))], ['shards/main.js'], 'besides the launcher, only the node runs (its supervisor and worker)')
  const state = readLauncherState(box.dir)
  t.same([state?.nodes.router?.pid, state?.nodes.coordinator?.pid], [l.pid, l.pid], 'launcher.json: the router and the coordinator run in the launcher\'s process')

  const anonymous = new HttpClient()
  t.teardown(async () => await anonymous.close())
  for (const url of [box.routerUrl, box.coordinatorUrl]) {
    t.equal((await anonymous.request('GET', `${url}/cluster`)).status, 401, `${url}: no token, 401`)
  }
  t.equal((await box.http.put(box.routerUrl, 'threads-a', 'one', { 'content-type': 'text/plain' })).status, 201, 'a PUT with the admin token')
  const peer = await anonymous.request('GET', `http://127.0.0.1:${box.routerPort + 10_000}${INTERNAL_COORDINATOR.mapFollow}?after=0`)
  t.ok(peer.status === 401 || peer.status === 403, `the coordinator's peer listener refuses a caller without the cluster secret (${peer.status})`)

  // A thread cannot be sent SIGHUP: the launcher has every part re-read the tokens file when the file changes.
  const paths = credentialPaths(box.dir)
  const added = `skv_${randomBytes(32).toString('base64url')}`
  const file = JSON.parse(readFileSync(paths.tokensFile, 'utf8')) as { tokens: unknown[] }
  file.tokens.push({ name: 'reader', sha256: createHash('sha256').update(added).digest('hex'), roles: ['read'] })
  writeFileSync(paths.tokensFile, JSON.stringify(file), { mode: 0o600 })
  let last = 0
  const withAdded = async (url: string): Promise<boolean> => {
    last = (await anonymous.request('GET', url, { headers: { authorization: `Bearer ${added}` } })).status
    return last === 200
  }
  await waitFor(async () => await withAdded(`${box.routerUrl}/kv/threads-a`), 20_000, () => `the router thread to accept a token added to the file (last: ${last})`)
  await waitFor(async () => await withAdded(`${box.coordinatorUrl}/cluster`), 20_000, () => `the coordinator thread to accept it (last: ${last})`)
  // The node is a process: the launcher sends it a SIGHUP for the same edit (direct clients read from it with tokens).
  await waitFor(async () => await withAdded(`http://127.0.0.1:${box.basePort}/kv/threads-a`), 20_000, () => `the node to accept it (last: ${last})`)
  t.pass('one edit of the file: both threads and the node took the new token without a restart')
  t.equal(await box.interrupt(l), 0, 'Ctrl-C')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')
})
