import t from 'tap'
import type tap from 'tap'
import { join } from 'node:path'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { isAlive, sandbox, waitFor } from '../harness/cluster-nodes'
import { leadingCoordinator, startCluster } from '../harness/cluster'
import { addGroup, keyRange, preload, startGroupNode, waitForRebalance } from '../harness/rebalance'
import { launchCoordinator } from '../../src/local/launcher'
import { clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { b64 } from '../../src/registry/etcd/wire'

/**
 * How a coordinator's term ends where it cannot finish its work. A coordinator deposed while it starts its term — elected, then cut off from etcd before
 * it has read the map — stands by again in-process (coordinator/server.ts), rather than
 * exit: the term's registry calls are given up as its lease runs out on its own clock,
 * and it campaigns again. Once etcd answers again it leads and serves the map. The cut is
 * an HTTP proxy in front of etcd that stops answering right after it passed the
 * transaction that made the coordinator leader. And a term deposed while its rebalance
 * waits on a node that does not answer (frozen) gives its node calls up and stands by at
 * once, rather than wait out the call's 30 s past the 15 s a term may take to stop (exit 3).
 */

const CLUSTER = 'term-start'

interface CutProxy { url: string, cut: () => boolean, heal: () => void }

/** Passes every call to etcd until the leader key is first won; from then on answers nothing until `heal()`. */
async function cutAfterElection (t: tap.Test, target: string): Promise<CutProxy> {
  const leaderKey = b64(clusterKeys(CLUSTER).leader)
  let cut = false
  let healed = false
  const held = new Set<ServerResponse>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (cut) {
        held.add(res) // etcd as a cut-off client sees it: no answer
        return
      }
      const body = Buffer.concat(chunks)
      void (async () => {
        const answer = await fetch(`${target}${req.url ?? '/'}`, { method: req.method, body, headers: { 'content-type': 'application/json' } })
        const text = await answer.text()
        if (!healed && req.url === '/v3/kv/txn' && body.includes(leaderKey) && (JSON.parse(text) as { succeeded?: boolean }).succeeded === true) cut = true
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(text)
      })().catch(() => { req.socket.destroy() })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })
  return {
    url: `127.0.0.1:${(server.address() as { port: number }).port}`,
    cut: () => cut,
    heal: () => {
      cut = false
      healed = true
      // The calls held so far fail as a healed partition's reset connections do; the client tries again.
      for (const res of held) res.socket?.destroy()
      held.clear()
    }
  }
}

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('deposed while starting its term: the coordinator stands by again and leads once etcd answers', async (t) => {
    const etcd = await startEtcd(t, { members: 1, name: 'term-start' })
    const box = sandbox(t, 'term-start')
    const proxy = await cutAfterElection(t, etcd.endpoints[0] as string)
    const coordinator = await launchCoordinator({
      name: 'coordinator',
      dataDir: join(box.tmp, 'coordinator'),
      port: 0,
      groups: ['g1=http://127.0.0.1:9'],
      env: { SHARDKV_LOG_LEVEL: 'info' },
      extraArgs: ['--registry', `etcd://${proxy.url}`, '--registry-cluster', CLUSTER, '--leader-ttl-seconds', '2'],
      readyTimeoutMs: 60_000
    })
    box.launched.push(coordinator)

    const notStarted = await coordinator.waitForEvent('coordinator-term-not-started', 60_000)
    t.ok(proxy.cut(), 'it was elected, and etcd stopped answering before its term had read the map')
    t.match(String((notStarted.err as { message?: unknown } | undefined)?.message), /given up by its caller/, `its registry read was given up as the lease ran out: ${JSON.stringify(notStarted.err).slice(0, 200)}`)
    t.ok(isAlive(coordinator.pid), `the process stood by again rather than exit (pid ${coordinator.pid})`)
    const standby = await box.http.getJson<{ leader?: boolean }>(`${coordinator.url}/healthz`)
    t.equal(standby.leader, false, 'and answers as a standby while etcd is cut off')

    proxy.heal()
    await waitFor(async () => (await box.http.getJson<{ leader?: boolean }>(`${coordinator.url}/healthz`).catch(() => undefined))?.leader === true, 60_000, 'the coordinator leads once etcd answers')
    const view = await waitFor(async () => {
      const r = await box.http.request('GET', `${coordinator.url}/cluster`)
      return r.status === 200 ? r.json<{ epoch: number, groups: Array<{ id: string }> }>() : undefined
    }, 30_000, 'the new term serves the cluster view')
    t.same(view.groups.map((g) => g.id), ['g1'], `it created the map from its flags (epoch ${view.epoch})`)
    t.equal(coordinator.output().includes('coordinator-term-failed'), false, 'no term failed to start or stop for good')
  })

  t.test('deposed while its rebalance waits on a node that does not answer: the term gives the call up and stands by', async (t) => {
    const c = await startCluster(t, { name: 'term-stuck', groups: 2, workers: 0, etcdMembers: 1, coordinators: 2, routers: 1, routerArgs: ['--leader-ttl-seconds', '2', '--rebalance-rows-per-sec', '100', '--rebalance-batch', '20'] })
    await preload(c.http, c.routerUrl, keyRange('stuck', 1000), (k) => `v:${k}`)
    const g3 = await startGroupNode(c, 'g3', { workers: 0 })
    t.teardown(() => { g3.signal('SIGCONT') })
    const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url })
    t.equal(added.status, 202, 'g3 is being added')
    await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying' && p.scanned > 0, { what: 'the add copying', timeoutMs: 60_000 })
    const leader = await leadingCoordinator(c)
    // The target stops answering: the leader's next import waits on it (30 s timeout), and
    // the copy's progress stops moving.
    g3.signal('SIGSTOP')
    let scanned = -1
    let since = Date.now()
    const stalled = await waitForRebalance(c.http, c.routerUrl, (p) => {
      if (p.scanned !== scanned) [scanned, since] = [p.scanned, Date.now()]
      return p.phase === 'copying' && Date.now() - since > 1500
    }, { what: 'the copy waiting on the frozen g3', timeoutMs: 60_000 })
    t.comment(`the copy waits on g3 at ${stalled.scanned} rows scanned`)
    // Frozen past its lease, the leader finds on waking that it no longer leads.
    leader.signal('SIGSTOP')
    t.teardown(() => { if (isAlive(leader.pid)) leader.signal('SIGCONT') })
    const other = c.coordinators.find((p) => p !== leader)
    if (other === undefined) throw new Error('two coordinators expected')
    await waitFor(async () => (await c.http.getJson<{ leader?: boolean }>(`${other.url}/healthz`).catch(() => undefined))?.leader === true, 60_000, `${other.name} leads`)
    const standingBy = leader.waitForEvent('coordinator-standing-by-again', 60_000)
    leader.signal('SIGCONT')
    await standingBy
    const standby = await leader.waitForEvent('coordinator-standby', 60_000)
    t.ok(isAlive(leader.pid), `${leader.name} stood by again (${String(standby.msg)}) and did not exit (pid ${leader.pid})`)
    t.equal(leader.output().includes('coordinator-term-failed'), false, 'its term stopped within its budget')
  })
}
