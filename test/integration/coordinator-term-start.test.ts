import t from 'tap'
import type tap from 'tap'
import { join } from 'node:path'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { isAlive, sandbox, waitFor } from '../harness/cluster-nodes'
import { launchCoordinator } from '../../src/local/launcher'
import { clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { b64 } from '../../src/registry/etcd/wire'

/**
 * A coordinator deposed while it starts its term — elected, then cut off from etcd before
 * it has read the map — stands by again in-process (coordinator/server.ts), rather than
 * exit: the term's registry calls are given up as its lease runs out on its own clock,
 * and it campaigns again. Once etcd answers again it leads and serves the map. The cut is
 * an HTTP proxy in front of etcd that stops answering right after it passed the
 * transaction that made the coordinator leader.
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
}
