import t, { type Test } from 'tap'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { ensureCredentials } from '../../src/local/credentials'
import { HttpClient } from '../harness/http'
import { LoadGenerator } from '../harness/history'
import { finishLoad } from '../harness/load-check'
import { sleep, waitFor } from '../harness/cluster'
import { Containers, ensureEtcdImage, ensureImages, freePort, ROOT, withoutDocker } from '../harness/docker'

/**
 * The image, run for real: shard nodes (two groups of primary + replica), a router and, when
 * this checkout has one, a coordinator, each a container of the one image with host networking
 * on 127.0.0.1, credentials mounted read-only, state in named volumes. Under a history-checked
 * write load a primary container and the router container are SIGKILLed and started again from
 * their volumes, and the Kubernetes preStop hook (`shardkv prestop`) runs in a group's replica
 * (nothing to do) and primary (a switchover); every acknowledged write reads back, no read was stale.
 *
 * Then the etcd shape of deploy/compose.yaml and deploy/kubernetes/, in containers: one etcd member
 * (the shardkv-etcd image), two coordinators campaigning for the leader key, a router following the
 * map in etcd, a group of primary + replica registered in etcd. Under a history-checked load the
 * leading coordinator's container is SIGKILLed, the standby takes over, a switchover through the
 * router works under it, the killed coordinator comes back as a standby; everything reads back.
 * Both shapes are in this one file so that tap (jobs: 2) never builds the same image twice at once.
 */

// A cold run builds the base (debootstrap) and the image (apt, npm ci, better-sqlite3, tsc).
t.setTimeout(20 * 60_000)

const UID = 10001 // the image's shardkv user (Dockerfile)
const IN = '/run/shardkv' // where the credentials are mounted in the containers

interface Shape { image: string, token: string, http: HttpClient, c: Containers, routerUrl: string, groups: Record<string, { primary: string, replica: string, urls: [string, string] }> }

function credentials (t: Test): { files: Record<string, string>, token: string } {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-docker-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const creds = ensureCredentials(dir)
  // The containers run as the image's user: the files are theirs to read (still mode 0600).
  if (process.getuid?.() === 0) for (const f of [creds.clusterSecretFile, creds.tokensFile]) chownSync(f, UID, UID)
  return {
    files: { [creds.clusterSecretFile]: `${IN}/cluster-secret`, [creds.tokensFile]: `${IN}/tokens.json` },
    token: readFileSync(creds.adminTokenFile, 'utf8').trim()
  }
}
const AUTH = ['--cluster-secret-file', `${IN}/cluster-secret`, '--tokens-file', `${IN}/tokens.json`]

async function healthy (http: HttpClient, url: string, what: string, timeoutMs = 90_000): Promise<void> {
  await waitFor(async () => {
    const res = await http.request('GET', `${url}/healthz`, { timeoutMs: 2000 }).catch(() => undefined)
    return res?.status === 200
  }, timeoutMs, `${what} answers ${url}/healthz`)
}

async function startCluster (t: Test, image: string): Promise<Shape> {
  const { files, token } = credentials(t)
  const http = new HttpClient({ headers: () => ({ authorization: `Bearer ${token}` }) })
  t.teardown(async () => { await http.close() })
  const c = new Containers(t, image)
  t.teardown(async () => { if (t.passing() === false) t.comment(await c.allLogs()) })
  const taken = new Set<number>()
  const groups: Shape['groups'] = {}
  for (const g of ['g1', 'g2']) {
    const ports = [await freePort(taken), await freePort(taken)]
    const names = [`${g}-p`, `${g}-r`]
    for (const [i, name] of names.entries()) {
      await c.start({ name, volume: name, files, args: ['node', '--data-dir', '/data', '--host', '127.0.0.1', '--port', String(ports[i]), '--group', g, '--node-id', name, '--workers', '1', ...AUTH] })
    }
    const urls = ports.map((p) => `http://127.0.0.1:${p}`) as [string, string]
    groups[g] = { primary: names[0]!, replica: names[1]!, urls }
  }
  for (const [g, { urls }] of Object.entries(groups)) for (const u of urls) await healthy(http, u, `shard node of ${g}`)
  const groupArgs = Object.entries(groups).flatMap(([g, { urls }]) => ['--group', `${g}=${urls.join('+')}`])
  const routerPort = await freePort(taken)
  // With the control plane split out (issue 9) the router follows a coordinator; before it, the router is one.
  if (existsSync(join(ROOT, 'coordinator', 'main.ts'))) {
    t.comment('shape: a coordinator container, and a router container following it')
    const coordinatorPort = await freePort(taken)
    await c.start({ name: 'coordinator', volume: 'coordinator', files, args: ['coordinator', '--port', String(coordinatorPort), '--data-dir', '/data', ...groupArgs, ...AUTH] })
    await healthy(http, `http://127.0.0.1:${coordinatorPort}`, 'the coordinator')
    await c.start({ name: 'router', files, args: ['router', '--port', String(routerPort), '--coordinator', `http://127.0.0.1:${coordinatorPort}`, ...AUTH] })
  } else {
    t.comment('shape: a router container that is also the coordinator (no coordinator/ in this checkout)')
    await c.start({ name: 'router', volume: 'router', files, args: ['router', '--port', String(routerPort), '--data-dir', '/data', ...groupArgs, ...AUTH] })
  }
  const routerUrl = `http://127.0.0.1:${routerPort}`
  await healthy(http, routerUrl, 'the router')
  return { image, token, http, c, routerUrl, groups }
}

async function waitForView (s: Shape, pred: (v: ClusterView) => boolean, what: string, timeoutMs = 60_000): Promise<ClusterView> {
  let last = ''
  return await waitFor(async () => {
    const v = await s.http.getJson<ClusterView>(`${s.routerUrl}/cluster`).catch((err: Error) => { last = err.message; return undefined })
    if (v !== undefined) last = JSON.stringify(v.groups.map((g) => ({ id: g.id, term: g.term, nodes: g.nodes.map((n) => `${n.url} ${n.role} ${n.health}${n.inSync === true ? ' in-sync' : ''}`) })))
    return v !== undefined && pred(v) ? v : undefined
  }, timeoutMs, () => `${what}; last: ${last}`)
}

/** GET /readyz of a node without a token (as a kubelet probes it): 200 only for a primary or an in-sync replica. */
async function readyz (url: string): Promise<number> {
  const anonymous = new HttpClient()
  try {
    return (await anonymous.request('GET', `${url}/readyz`, { timeoutMs: 2000 }).catch(() => ({ status: 0 }))).status
  } finally {
    await anonymous.close()
  }
}

async function allReady (s: Shape, timeoutMs = 30_000): Promise<void> {
  const urls = Object.values(s.groups).flatMap((g) => g.urls)
  const statuses = new Map<string, number>()
  await waitFor(async () => {
    for (const u of urls) statuses.set(u, await readyz(u))
    return [...statuses.values()].every((st) => st === 200)
  }, timeoutMs, () => `every node's /readyz answers 200; last: ${JSON.stringify(Object.fromEntries(statuses))}`)
}

/** Runs the preStop hook in a group's replica (nothing to do), then in its primary (a switchover), as the kubelet would. */
async function handOff (t: Test, s: Shape, group: string): Promise<void> {
  const g = s.groups[group]!
  const env = { SHARDKV_ROUTER_URL: s.routerUrl, SHARDKV_TOKEN: s.token }
  t.match(await s.c.exec(g.replica, ['shardkv', 'prestop'], env), /nothing to hand off/, `prestop in the replica of ${group} hands nothing off`)
  const started = Date.now()
  await s.c.exec(g.primary, ['shardkv', 'prestop'], env)
  await waitForView(s, (v) => v.groups.find((x) => x.id === group)?.nodes.find((n) => n.role === 'primary')?.url === g.urls[1], `the replica of ${group} promoted by the switchover`)
  t.comment(`preStop switchover of ${group}: ${Date.now() - started} ms until GET /cluster showed the new primary`)
  await waitForView(s, allInSync, `the old primary of ${group} an in-sync replica`)
  await allReady(s)
}

const allInSync = (v: ClusterView): boolean => v.groups.every((g) => g.nodes.every((n) => n.health === 'up' && (n.role === 'primary' || n.inSync === true)))

t.test('the image: SIGKILL a primary container and the router container under load, restart them from their volumes, read everything back', async (t) => {
  if (await withoutDocker(t)) return
  const built = await ensureImages((line) => { t.comment(line) })
  t.comment(`base image ${built.baseMs} ms; ${built.image} ${built.cached ? 'cached' : 'built'} in ${built.imageMs} ms`)
  const started = Date.now()
  const s = await startCluster(t, built.image)
  await waitForView(s, allInSync, 'every node up and every replica in sync')
  t.comment(`cluster of containers healthy ${Date.now() - started} ms after the first docker run`)
  await allReady(s)
  t.pass('every node is ready (/readyz): a primary or an in-sync replica')

  const load = new LoadGenerator({ baseUrl: s.routerUrl, clients: 6, keysPerClient: 12, durationMs: 120_000, maxOpsPerClient: 4000, requestTimeoutMs: 20_000 }, s.http)
  void load.run() // finishLoad waits for it
  try {
    await load.waitForOps(300)
    const g1 = s.groups.g1!
    // 1. The primary of g1 dies (SIGKILL of its container): its replica takes over under a new term.
    await s.c.kill(g1.primary)
    await waitForView(s, (v) => v.groups.find((g) => g.id === 'g1')?.nodes.find((n) => n.role === 'primary')?.url === g1.urls[1], 'the replica of g1 promoted')
    await load.waitForOps(load.completedOps() + 200)
    // …and its container, started again from its volume, rejoins as the replica.
    await s.c.restart(g1.primary)
    await waitForView(s, allInSync, 'the restarted g1 node in sync again', 90_000)
    await allReady(s)
    await load.waitForOps(load.completedOps() + 200)
    // 2. The router dies; started again, it serves the same map (from its volume, or its coordinator).
    await s.c.kill('router')
    await sleep(500)
    await s.c.restart('router')
    await healthy(s.http, s.routerUrl, 'the restarted router')
    await load.waitForOps(load.completedOps() + 300)
    // 3. The Kubernetes preStop hook (shardkv prestop) in the primary of g2: a switchover to its replica.
    await handOff(t, s, 'g2')
    await load.waitForOps(load.completedOps() + 200)
  } finally {
    load.stop()
  }
  const report = await finishLoad(t, load)
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 6 * 12, 'every key was read back through the restarted router')

  // The image's HEALTHCHECK (shardkv healthcheck) reports the containers healthy.
  for (const name of ['router', s.groups.g2!.primary]) {
    const status = await waitFor(async () => { const h = await s.c.health(name); return h === 'healthy' ? h : undefined }, 90_000, `docker reports ${name} healthy`)
    t.equal(status, 'healthy', `${name}: HEALTHCHECK healthy`)
  }
})

interface Coordinator { name: string, url: string }

/** GET /healthz of a coordinator: its `leader` field, or undefined when it does not answer. */
async function leads (http: HttpClient, url: string): Promise<boolean | undefined> {
  const res = await http.request('GET', `${url}/healthz`, { timeoutMs: 1500 }).catch(() => undefined)
  if (res?.status !== 200) return undefined
  return (JSON.parse(res.body.toString('utf8')) as { leader?: boolean }).leader
}

async function leaderOf (http: HttpClient, coordinators: Coordinator[], timeoutMs: number, what: string): Promise<Coordinator> {
  let last = ''
  return await waitFor(async () => {
    const states = await Promise.all(coordinators.map(async (c) => await leads(http, c.url)))
    last = coordinators.map((c, i) => `${c.name}: ${String(states[i])}`).join(', ')
    const leading = coordinators.filter((_, i) => states[i] === true)
    return leading.length === 1 ? leading[0] : undefined
  }, timeoutMs, () => `${what}; last: ${last}`)
}

t.test('the etcd shape in containers: SIGKILL the leading coordinator under load, the standby leads, a switchover through the router', async (t) => {
  if (await withoutDocker(t)) return
  const built = await ensureImages((line) => { t.comment(line) })
  const etcdImage = await ensureEtcdImage((line) => { t.comment(line) })
  t.comment(`${etcdImage.image} ${etcdImage.cached ? 'cached' : 'built'} in ${etcdImage.ms} ms`)
  const started = Date.now()
  const { files, token } = credentials(t)
  const http = new HttpClient({ headers: () => ({ authorization: `Bearer ${token}` }) })
  t.teardown(async () => { await http.close() })
  const c = new Containers(t, built.image)
  t.teardown(async () => { if (t.passing() === false) t.comment(await c.allLogs()) })
  const taken = new Set<number>()

  // One etcd member (the image of deploy/compose.yaml), its data in the container's anonymous volume.
  const [etcdClient, etcdPeer] = [await freePort(taken), await freePort(taken)]
  await c.start({
    name: 'etcd',
    image: etcdImage.image,
    args: [],
    env: {
      ETCD_NAME: 'e1',
      ETCD_LISTEN_CLIENT_URLS: `http://127.0.0.1:${etcdClient}`,
      ETCD_ADVERTISE_CLIENT_URLS: `http://127.0.0.1:${etcdClient}`,
      ETCD_LISTEN_PEER_URLS: `http://127.0.0.1:${etcdPeer}`,
      ETCD_INITIAL_ADVERTISE_PEER_URLS: `http://127.0.0.1:${etcdPeer}`,
      ETCD_INITIAL_CLUSTER: `e1=http://127.0.0.1:${etcdPeer}`,
      ETCD_INITIAL_CLUSTER_STATE: 'new',
      ETCD_INITIAL_CLUSTER_TOKEN: `shardkv-test-${c.run}`
    }
  })
  const anonymous = new HttpClient()
  t.teardown(async () => { await anonymous.close() })
  await waitFor(async () => {
    const res = await anonymous.request('GET', `http://127.0.0.1:${etcdClient}/health`, { timeoutMs: 2000 }).catch(() => undefined)
    return res?.status === 200 && /"health":\s*"true"/.test(res.body.toString('utf8'))
  }, 60_000, 'the etcd member answers /health')
  const registry = ['--registry', `etcd://127.0.0.1:${etcdClient}`, '--registry-cluster', `test-${c.run}`]

  // A group of primary + replica, registered in etcd.
  const nodePorts = [await freePort(taken), await freePort(taken)]
  const urls = nodePorts.map((p) => `http://127.0.0.1:${p}`) as [string, string]
  for (const [i, name] of ['g1-p', 'g1-r'].entries()) {
    await c.start({ name, volume: name, files, args: ['node', '--data-dir', '/data', '--host', '127.0.0.1', '--port', String(nodePorts[i]), '--group', 'g1', '--node-id', name, '--workers', '1', ...registry, ...AUTH] })
  }
  for (const u of urls) await healthy(http, u, 'a shard node of g1')

  // Two coordinators: one leads, the other stands by (its /healthz answers 200, leader false).
  const coordinators: Coordinator[] = []
  for (const name of ['coordinator-a', 'coordinator-b']) {
    const port = await freePort(taken)
    await c.start({ name, files, args: ['coordinator', '--port', String(port), '--data-dir', '/data', ...registry, '--group', `g1=${urls.join('+')}`, ...AUTH] })
    coordinators.push({ name, url: `http://127.0.0.1:${port}` })
  }
  for (const co of coordinators) await healthy(http, co.url, co.name)
  const first = await leaderOf(http, coordinators, 30_000, 'one coordinator leads')
  const standby = coordinators.find((co) => co !== first)!
  t.equal(await leads(http, standby.url), false, `${standby.name} stands by: /healthz 200 with leader false`)

  const routerPort = await freePort(taken)
  const routerUrl = `http://127.0.0.1:${routerPort}`
  await c.start({ name: 'router', files, args: ['router', '--port', String(routerPort), ...registry, ...AUTH] })
  await healthy(http, routerUrl, 'the router')
  const s: Shape = { image: built.image, token, http, c, routerUrl, groups: { g1: { primary: 'g1-p', replica: 'g1-r', urls } } }
  await waitForView(s, (v) => allInSync(v) && v.groups.length === 1 && v.groups[0]!.nodes.length === 2, 'g1: a primary and an in-sync replica, seen through the router', 90_000)
  t.comment(`etcd shape healthy ${Date.now() - started} ms after the first docker run`)
  await allReady(s)

  const load = new LoadGenerator({ baseUrl: routerUrl, clients: 4, keysPerClient: 10, durationMs: 90_000, maxOpsPerClient: 3000, requestTimeoutMs: 20_000 }, http)
  void load.run() // finishLoad waits for it
  try {
    await load.waitForOps(200)
    // 1. The leading coordinator dies; the standby's campaign wins once the leader key's lease ends.
    const killedAt = Date.now()
    await c.kill(first.name)
    const second = await leaderOf(http, [standby], 30_000, `${standby.name} takes over`)
    t.equal(second.name, standby.name, `${standby.name} leads after the leader's container was killed`)
    t.comment(`${standby.name} leads ${Date.now() - killedAt} ms after the SIGKILL of ${first.name}`)
    await load.waitForOps(load.completedOps() + 100)
    // 2. A switchover through the router, relayed to the new leader (the router reads the leader key
    //    every second: until it has, the relayed call answers 503 and is asked again).
    const switchedAt = Date.now()
    const answer = await waitFor(async () => {
      const res = await http.request('POST', `${routerUrl}/admin/groups/g1/switchover`, { timeoutMs: 30_000 }).catch(() => undefined)
      if (res === undefined || res.status === 503) return undefined
      return res
    }, 20_000, 'the switchover of g1 through the router answered')
    t.equal(answer.status, 200, `switchover through the router under the new leader: ${answer.body.toString('utf8')}`)
    await waitForView(s, (v) => v.groups[0]?.nodes.find((n) => n.role === 'primary')?.url === urls[1], 'the replica of g1 promoted by the switchover')
    t.comment(`switchover under ${standby.name}: ${Date.now() - switchedAt} ms until GET /cluster showed the new primary`)
    await waitForView(s, allInSync, 'the old primary of g1 an in-sync replica')
    await load.waitForOps(load.completedOps() + 200)
    // 3. The killed coordinator, started again, stands by: the leader stays.
    await c.restart(first.name)
    await waitFor(async () => await leads(http, first.url) === false, 60_000, `${first.name} back as a standby`)
    t.equal(await leads(http, standby.url), true, `${standby.name} still leads after ${first.name} came back`)
    await load.waitForOps(load.completedOps() + 100)
  } finally {
    load.stop()
  }
  const report = await finishLoad(t, load)
  t.ok(report.ok, report.text)
  t.equal(report.counts.keysVerified, 4 * 10, 'every key was read back through the router')
  const coordinatorHealth = await waitFor(async () => { const h = await c.health(standby.name); return h === 'healthy' ? h : undefined }, 60_000, `docker reports ${standby.name} healthy`)
  t.equal(coordinatorHealth, 'healthy', 'the leading coordinator: HEALTHCHECK healthy')
})
