import t, { type Test } from 'tap'
import { request } from 'undici'
import { DASHBOARD } from '../../src/protocol/wire'
import { etcdAvailable } from '../harness/etcd'
import { isAlive, leadingCoordinator, startCluster, waitFor } from '../harness/cluster'
import { LoadGenerator } from '../harness/history'
import { finishLoad } from '../harness/load-check'
import { admin, clusterView } from '../harness/rebalance'

/**
 * A coordinator lives in terms (coordinator/server.ts): deposed, it drops what its term
 * started and stands by again in the same process, on the same ports, and can lead again.
 * The leader is frozen (SIGSTOP) past its lease, so the standby takes over; continued, the
 * old leader finds on its own clock that it no longer leads, stands by (its /healthz says
 * leader: false; the process is still the one launched), and after the new leader is
 * SIGKILLed it is elected again and changes the map — all under a history-checked load.
 */

interface Health { leader?: boolean, epoch?: number }

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('a deposed leader stands by again in-process and leads again later', async (t) => {
    const c = await startCluster(t, { name: 'terms', groups: 1, replicas: 1, workers: 0, etcdMembers: 1, coordinators: 2, routers: 1, routerArgs: ['--leader-ttl-seconds', '2'] })
    const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 3, keysPerClient: 30, durationMs: 180_000, maxOpsPerClient: 100_000, keyPrefix: 'terms' })
    load.run().catch(() => undefined) // finishLoad awaits it (and reports a failure)
    await load.waitForOps(100)

    const first = await leadingCoordinator(c)
    const second = c.coordinators.find((p) => p !== first)
    if (second === undefined) throw new Error('two coordinators expected')
    // A dashboard stream relayed from the leader: frozen, it would go quiet for as long as the leader stays frozen.
    const dashboard = await openRelayedEvents(t, `${c.routerUrl}${DASHBOARD.events}`)
    first.signal('SIGSTOP')
    t.teardown(() => { if (isAlive(first.pid)) first.signal('SIGCONT') })
    // Relayed to the frozen leader (which refuses no connection): answered by the next leader
    // once the router sees it, not after the relay's 120 s timeout (nor this client's 60 s).
    const relayedWhileFrozen = c.http.request('GET', `${c.routerUrl}/cluster`, { timeoutMs: 60_000 }).catch((err: Error) => err)
    await waitFor(async () => (await health(c, second.url))?.leader === true, 60_000, `${second.name} leads while ${first.name} is frozen`)
    const answered = await relayedWhileFrozen
    const outcome = answered instanceof Error ? answered.message : `${answered.status} ${answered.text().slice(0, 200)}`
    t.equal(answered instanceof Error ? 0 : answered.status, 200, `a call relayed to the frozen leader is answered by the new one (${outcome})`)
    const bye = await dashboard.bye
    t.equal(bye, JSON.stringify({ reason: 'leader-changed' }), 'the dashboard stream from the frozen leader ends with a bye saying so (the page reconnects to the new one)')
    first.signal('SIGCONT')
    await waitFor(async () => (await health(c, first.url))?.leader === false, 30_000, `${first.name} answers as a standby`)
    // Its /healthz says "not leader" as soon as its lease is gone, a moment before the term's loop logs the drop.
    await waitFor(() => first.output().includes('coordinator-standing-by-again'), 30_000, `${first.name} to log that it dropped its term`)
    t.pass(`${first.name} logged that it dropped its term`)
    t.ok(isAlive(first.pid), `${first.name} stood by again without exiting (pid ${first.pid})`)
    const standbyAnswer = await admin(c.http, 'GET', `${first.url}/cluster`)
    t.equal(standbyAnswer.status, 503, 'a standby refuses control calls')
    t.equal(standbyAnswer.body?.error, 'not_leader', 'with not_leader')

    const epochBefore = (await clusterView(c.http, c.routerUrl)).epoch
    second.signal('SIGKILL')
    await second.exited
    // Sent while the dead leader's key still names it: the router tries again as the key runs
    // out, waits for the election (the key names no one for a moment) and relays to the winner.
    const relayedAcrossElection = await c.http.request('GET', `${c.routerUrl}/cluster`, { timeoutMs: 30_000 }).catch((err: Error) => err)
    const across = relayedAcrossElection instanceof Error ? relayedAcrossElection.message : `${relayedAcrossElection.status} ${relayedAcrossElection.text().slice(0, 160)}`
    t.equal(relayedAcrossElection instanceof Error ? 0 : relayedAcrossElection.status, 200, `a call relayed to the killed leader is answered by the next one (${across})`)
    await waitFor(async () => (await health(c, first.url))?.leader === true, 60_000, `${first.name} leads again`)
    const switched = await waitFor(async () => {
      const r = await admin(c.http, 'POST', `${c.routerUrl}/admin/groups/g1/switchover`, {})
      return r.status === 200 ? r : r.status === 503 ? undefined : `refused: ${r.status} ${r.text.slice(0, 200)}`
    }, 60_000, 'a switchover accepted by the re-elected leader')
    t.equal(typeof switched === 'string' ? switched : 'ok', 'ok', 'the re-elected leader changes the map')
    const after = await clusterView(c.http, c.routerUrl)
    t.ok(after.epoch > epochBefore, `the map moved on: epoch ${epochBefore} -> ${after.epoch}`)

    await load.waitForOps(load.completedOps() + 100)
    const report = await finishLoad(t, load, { noFailures: true })
    t.ok(report.ok, `history checks out\n${report.text}`)
  })
}

if (etcdAvailable()) {
  t.test('a router relays to a leader elected between two of its polls of the leader key', async (t) => {
    const c = await startCluster(t, { name: 'terms-relay', groups: 1, replicas: 0, workers: 0, etcdMembers: 1, coordinators: 1, routers: 1, routerArgs: ['--leader-ttl-seconds', '2'] })
    const only = c.coordinators[0]
    if (only === undefined) throw new Error('one coordinator expected')
    await waitFor(async () => (await health(c, only.url))?.leader === true, 60_000, `${only.name} leads`)
    only.signal('SIGSTOP')
    t.teardown(() => { if (isAlive(only.pid)) only.signal('SIGCONT') })
    // The frozen leader's key runs out and the router's poll finds no leader (until then a
    // relayed call waits on the frozen process: the probe gives up on it and asks again). The
    // router waits up to 10 s for an election before it answers that no coordinator is known.
    const unknown = await waitFor(async () => {
      const r = await c.http.request('GET', `${c.routerUrl}/cluster`, { timeoutMs: 30_000 }).catch(() => undefined)
      return r?.status === 503 && /no coordinator is known/.test(r.text()) ? r : undefined
    }, 90_000, 'the router knows no coordinator')
    t.equal(unknown.status, 503, 'no leader: 503, the call refused')
    only.signal('SIGCONT')
    // Continued, it still says it leads until its own clock tells it otherwise: wait for the new term.
    await waitFor(async () => only.output().includes('coordinator-standing-by-again') && (await health(c, only.url))?.leader === true, 60_000, `${only.name} leads again`)
    // Well within the router's poll period (1 s): it asks etcd again rather than refuse.
    const view = await admin(c.http, 'GET', `${c.routerUrl}/cluster`)
    t.equal(view.status, 200, `the router relays at once (${view.status} ${view.text.slice(0, 160)})`)
  })
}

/** Opens a dashboard event stream; `bye` resolves with the data of its bye event (or what ended it instead, within 60 s). */
async function openRelayedEvents (t: Test, url: string): Promise<{ bye: Promise<string> }> {
  const res = await request(url, { headersTimeout: 30_000, bodyTimeout: 0 })
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${await res.body.text()}`)
  t.teardown(() => { res.body.destroy() })
  const bye = (async (): Promise<string> => {
    let text = ''
    const bound = setTimeout(() => { res.body.destroy(new Error('no bye within 60 s')) }, 60_000)
    try {
      for await (const chunk of res.body) {
        text += String(chunk)
        const m = /event: bye\ndata: (.*)\n/.exec(text)
        if (m !== null) return m[1] as string
      }
      return 'the stream ended without a bye'
    } catch (err) {
      return String(err)
    } finally {
      clearTimeout(bound)
    }
  })()
  return { bye }
}

async function health (c: { http: { getJson: <T>(url: string) => Promise<T> } }, url: string): Promise<Health | undefined> {
  return await c.http.getJson<Health>(`${url}/healthz`).catch(() => undefined)
}
