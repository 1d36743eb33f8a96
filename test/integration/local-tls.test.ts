import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { createClient, NotFoundError, type KvClient } from '../../src/client'
import { tlsPaths } from '../../src/local/certificates'
import { readNodesFile } from '../../src/local/nodes-file'
import { sleep, waitUntilDead } from '../harness/cluster'
import { allReplicasInSync, describeView, groupOf, primaryUrl } from '../harness/cluster-view'
import { commandLine, localSandbox, ROOT, type LocalSandbox } from '../harness/local-launcher'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * Issue 8, "a test runs the whole quick start with TLS": `npm start -- --tls` as an
 * operator runs it (2 groups, 1 replica each). Every listener serves HTTPS with the
 * local CA's certificate; the routed and the direct client work with the CA and the
 * admin token, plain HTTP and clients without the CA are refused; a SIGKILLed primary
 * fails over with every acknowledged write kept; add-replica works over TLS; Ctrl-C
 * leaves nothing running.
 */

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)

/** The value after `flag` on each router and shard node command line (workers included), by pid. */
function flagValues (box: LocalSandbox, flag: string): Array<string | undefined> {
  return box.processes().map(commandLine).filter((args) => args.some((a) => /dist\/(router|shards)\/main\.js$/.test(a)))
    .map((args) => args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined)
}

interface Tls { url: string, ca: string, token: string, agent: Agent }

async function getJson<T> (tls: Tls, url: string): Promise<T> {
  const res = await request(url, { dispatcher: tls.agent, headers: { authorization: `Bearer ${tls.token}` }, headersTimeout: 10_000, bodyTimeout: 10_000 })
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${await res.body.text()}`)
  return await res.body.json() as T
}

async function waitForView (tls: Tls, pred: (v: ClusterView) => boolean, what: string, timeoutMs: number): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs
  let last: ClusterView | undefined
  while (Date.now() < deadline) {
    try {
      last = await getJson<ClusterView>(tls, `${tls.url}/cluster`)
      if (pred(last)) return last
    } catch { /* the router may be busy */ }
    await sleep(200)
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}; last view: ${last === undefined ? 'none' : describeView(last)}`)
}

/**
 * Writers that each own their keys and write 1, 2, 3, ... to them in turn: a write's
 * answer says it happened (acked) or maybe (an error: it may or may not have been
 * applied). At the end a key must hold its last acked value or a later maybe.
 */
class Writers {
  readonly acked = new Map<string, number>()
  readonly maybe = new Map<string, number[]>()
  ackedCount = 0
  errors: string[] = []
  private stopped = false
  private readonly done: Array<Promise<void>>

  constructor (private readonly client: KvClient, writers: number, keysPerWriter: number) {
    this.done = Array.from({ length: writers }, async (_, w) => await this.run(Array.from({ length: keysPerWriter }, (_, k) => `tls/w${w}/k${k}`)))
  }

  private async run (keys: string[]): Promise<void> {
    for (let n = 1; !this.stopped; n++) {
      const key = keys[n % keys.length] as string
      try {
        await this.client.put(key, String(n))
        this.acked.set(key, n)
        this.maybe.delete(key)
        this.ackedCount++
      } catch (err) {
        this.maybe.set(key, [...(this.maybe.get(key) ?? []), n])
        this.errors.push((err as Error).message)
      }
    }
  }

  async waitForAcks (count: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.ackedCount < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.ackedCount} of ${count} writes acknowledged within ${timeoutMs} ms; errors: ${this.errors.slice(-3).join('; ')}`)
      await sleep(50)
    }
  }

  async stop (): Promise<void> {
    this.stopped = true
    await Promise.all(this.done)
  }

  /** Keys whose value is neither their last acked one nor a later maybe. */
  async lost (reader: KvClient): Promise<string[]> {
    const bad: string[] = []
    for (const [key, n] of this.acked) {
      const value = Number((await reader.get(key)).value.toString())
      if (value !== n && !(this.maybe.get(key) ?? []).includes(value)) bad.push(`${key}: acked ${n}, read ${value}`)
    }
    return bad
  }
}

async function runScript (script: string, args: string[]): Promise<{ code: number, output: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist', 'scripts', `${script}.js`), ...args], { cwd: ROOT, timeout: 180_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr })
    })
  })
}

/** SIGKILLs a node's supervisor and workers at once (PIDs from its own /healthz). */
async function killNode (tls: Tls, url: string): Promise<void> {
  const h = await getJson<{ pid: number, workerPids: number[] }>(tls, `${url}/healthz`)
  const pids = [h.pid, ...h.workerPids]
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await waitUntilDead(pids, 10_000)
}

t.test('the quick start with --tls: HTTPS everywhere, clients with the CA, failover, add-replica, Ctrl-C', async (t) => {
  const box = await localSandbox(t, 'tls', { groups: 2, replicas: 1 })
  const l = await box.start(['--tls', '--restart-delay-ms', '5000'])
  await l.waitFor(/local cluster is up/, 120_000)
  const files = tlsPaths(box.dir)
  const url = `https://127.0.0.1:${box.routerPort}`
  t.equal(mode(files.dir), '700', 'tls/ is mode 0700')
  t.same([mode(files.caKey), mode(files.key)], ['600', '600'], 'the keys are mode 0600')
  t.match(l.output(), new RegExp(`router +${url.replace(/\./g, '\\.')}`), 'the summary shows the https URL')
  t.match(l.output(), `--cacert ${files.ca} `, 'and a curl line that trusts the CA')
  t.equal(readNodesFile(box.dir)?.tls, true, 'nodes.json records the choice')
  t.same([...new Set(flagValues(box, '--tls-cert'))], [files.cert], 'every process serves HTTPS with the certificate')
  t.same([...new Set(flagValues(box, '--peer-tls-ca'))], [files.ca], 'and runs mutual TLS with the CA')

  const ca = readFileSync(files.ca, 'utf8')
  const token = box.token() as string
  const tls: Tls = { url, ca, token, agent: new Agent({ connect: { ca } }) }
  const client = createClient({ url, ca, token, retryTimeoutMs: 20_000 })
  const direct = createClient({ url, ca, token, mode: 'direct' })
  t.teardown(async () => { await Promise.all([client.close(), direct.close(), tls.agent.close()]) })

  const put = await client.put('tls/greeting', 'hello')
  t.ok(put.created, 'routed PUT over https')
  t.equal((await client.get('tls/greeting')).value.toString(), 'hello', 'routed GET')
  await client.delete('tls/greeting')
  await t.rejects(client.get('tls/greeting'), NotFoundError, 'routed DELETE')
  const many = await client.putMany([{ key: 'tls/b1', value: 'one' }, { key: 'tls/b2', value: 'two' }, { key: 'tls/b3', value: 'three' }])
  t.ok(many.every((r) => 'etag' in r), 'a batch of puts')
  t.same((await client.getMany(['tls/b1', 'tls/b2', 'tls/b3'])).map((r) => 'value' in r ? r.value.toString() : String(r)), ['one', 'two', 'three'], 'a batch of gets')

  const plain = await request(`http://127.0.0.1:${box.routerPort}/healthz`, { headersTimeout: 5000, bodyTimeout: 5000 }).then((r) => r.statusCode, (err: Error) => err.message)
  t.ok(plain === 400 || typeof plain === 'string', `plain HTTP to the router is refused (${String(plain)})`)
  const noCa = await request(`${url}/healthz`).then((r) => String(r.statusCode), (err: NodeJS.ErrnoException) => err.code ?? err.message)
  t.match(noCa, /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/, `a client without the CA fails the certificate check (${noCa})`)
  const untrusting = createClient({ url, token, retryTimeoutMs: 500 })
  await t.rejects(untrusting.get('tls/b1'), 'the client library without the CA gets nothing')
  await untrusting.close()

  t.equal((await direct.put('tls/direct', 'straight')).created, true, 'direct-mode PUT to the primary\'s https data port')
  t.equal((await direct.get('tls/direct')).value.toString(), 'straight', 'direct-mode GET')
  t.equal((await client.get('tls/direct')).value.toString(), 'straight', 'seen through the router')

  let v = await waitForView(tls, (x) => allReplicasInSync(x) && x.groups.every((g) => g.nodes.every((n) => n.health === 'up' && n.url.startsWith('https://'))), 'every https node up and in sync', 90_000)
  const writers = new Writers(client, 4, 8)
  try {
    await writers.waitForAcks(100, 60_000)
    const first = primaryUrl(v, 'g1')
    const second = groupOf(v, 'g1').nodes.find((n) => n.role === 'replica')?.url as string
    await killNode(tls, first)
    t.pass(`SIGKILLed g1's primary ${first}`)
    v = await waitForView(tls, (x) => groupOf(x, 'g1').term === 2 && primaryUrl(x, 'g1') === second, `${second} primary of g1`, 60_000)
    t.pass(`failover over TLS: ${describeView(v)}`)
    const afterFailover = writers.ackedCount
    await writers.waitForAcks(afterFailover + 200, 60_000)
    t.pass('writes keep being acknowledged after the failover')
  } finally {
    await writers.stop()
  }
  t.same(await writers.lost(client), [], `every acknowledged write reads back (${writers.acked.size} keys, ${writers.ackedCount} acks, ${writers.errors.length} errors)`)

  const added = await runScript('add-replica', ['--router', url, '--cluster-dir', box.dir, '--group', 'g2', '--workers', '1'])
  t.equal(added.code, 0, `add-replica over TLS: ${added.output}`)
  v = await waitForView(tls, (x) => groupOf(x, 'g2').nodes.length === 3 && allReplicasInSync(x), 'g2 has a new in-sync replica', 90_000)
  t.ok(groupOf(v, 'g2').nodes.every((n) => n.url.startsWith('https://')), `the new replica is https too: ${describeView(v)}`)
  const addedLaunch = readNodesFile(box.dir)?.nodes.find((n) => n.name === 'g2-r2')
  t.ok(addedLaunch !== undefined, 'the launcher runs it (nodes.json)')
  t.match(JSON.parse(readFileSync(join(box.dir, 'g2-r2', 'launch.json'), 'utf8')), { tlsCertFile: files.cert, tlsCaFile: files.ca }, 'its launch.json keeps TLS for restart-node')

  t.equal(await box.interrupt(l), 0, 'Ctrl-C stops the cluster')
  await waitUntilDead(box.processes(), 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process is left')
})
