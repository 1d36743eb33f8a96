import t from 'tap'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { join } from 'node:path'
import { connect } from 'node:net'
import { once } from 'node:events'
import { kvPath } from '../../src/protocol/key'
import { startCluster, sleep, type TestCluster } from '../harness/cluster'
import { launchControlPlane, LaunchError, type ControlPlane } from '../../src/local/launcher'
import { HttpClient } from '../harness/http'

/**
 * The router process: its persisted map, its view of node health, SIGTERM, and
 * configuration it must refuse.
 */


/** One more coordinator (on `dataDir`) and a router following it; resolves with the router. */
async function startControlIn (c: TestCluster, args: { groups?: string[], extraArgs?: string[], dataDir: string }): Promise<ControlPlane> {
  const plane = await launchControlPlane({
    coordinatorName: 'coordinator-2',
    routerName: 'router-2',
    dataDir: args.dataDir,
    port: 0,
    groups: args.groups,
    extraArgs: args.extraArgs,
    readyTimeoutMs: 30_000
  })
  c.launched.push(plane.coordinator, plane.router)
  return plane
}

async function waitForView (c: TestCluster, url: string, pred: (v: ClusterView) => boolean, timeoutMs = 15_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs
  let last: ClusterView | undefined
  while (Date.now() < deadline) {
    last = await c.http.getJson<ClusterView>(`${url}/cluster`)
    if (pred(last)) return last
    await sleep(100)
  }
  throw new Error(`GET /cluster did not reach the expected state in ${timeoutMs} ms: ${JSON.stringify(last)}`)
}

t.test('router: health view, SIGTERM, persisted map', async (t) => {
  const c = await startCluster(t, { name: 'router', groups: 2, workers: 1, routerArgs: ['--health-interval-ms', '100'] })
  const { http } = c

  for (let i = 0; i < 30; i++) t.equal((await http.put(c.routerUrl, `rt/${i}`, `v${i}`)).status, 201, `seed rt/${i}`)

  const up = await waitForView(c, c.routerUrl, (v) => v.groups.every((g) => g.nodes.every((n) => n.health === 'up')))
  for (const s of c.primaries) {
    const g = up.groups.find((x) => x.id === s.group)
    const node = g?.nodes[0]
    t.match(node, { url: s.url, role: 'primary', health: 'up', pid: s.proc.pid, nodeId: s.nodeId }, `${s.group}: /cluster shows the node up, with its pid and node id`)
  }

  // A dead node shows as down, and as up again once it is back.
  const victim = c.primaries[1]!
  await c.killHard(victim)
  await waitForView(c, c.routerUrl, (v) => v.groups.find((g) => g.id === victim.group)?.nodes[0]?.health === 'down')
  t.pass(`${victim.group} reported down after SIGKILL`)
  await c.restart(victim)
  const back = await waitForView(c, c.routerUrl, (v) => v.groups.find((g) => g.id === victim.group)?.nodes[0]?.health === 'up')
  t.equal(back.groups.find((g) => g.id === victim.group)?.nodes[0]?.pid, victim.proc.pid, `${victim.group} up again with its new pid`)

  // SIGTERM: requests in flight are answered, then the router exits 0, promptly.
  // Warm the client's kept-alive connections first, so the requests below are on
  // accepted connections (a connection still in the listen backlog is simply reset).
  await Promise.all(Array.from({ length: 30 }, async (_, i) => await http.get(c.routerUrl, `rt/${i}`)))
  const inflight = Array.from({ length: 30 }, async (_, i) => await http.get(c.routerUrl, `rt/${i}`).then((r) => r.status, (err: Error) => err.message))
  await sleep(2)
  const termAt = Date.now()
  c.router.signal('SIGTERM')
  const results = await Promise.all(inflight)
  const exit = await Promise.race([c.router.exited, sleep(15_000).then(() => 'still running' as const)])
  const took = Date.now() - termAt
  t.same(exit, { code: 0, signal: null }, `router exits 0 on SIGTERM (after ${took} ms)`)
  t.ok(took < 10_000, `router exits within 10 s of SIGTERM (took ${took} ms; idle kept-alive client connections must not hold the drain)`)
  const failed = results.filter((r) => r !== 200)
  t.ok(failed.every((r) => typeof r === 'string'), `no in-flight request got an HTTP error: ${JSON.stringify(failed)}`)
  t.ok(results.filter((r) => r === 200).length > 0, `${results.filter((r) => r === 200).length} of 30 in-flight requests answered 200`)
  if (exit === 'still running') {
    c.router.signal('SIGKILL')
    await c.router.exited
  }

  // A coordinator restarted on the same data dir uses the persisted map, not its (different) flags.
  await c.coordinator.stop()
  const flags = [`g9=${c.primaries[0]!.url}`, `g1=${c.primaries[1]!.url}@3`]
  const plane = await startControlIn(c, { groups: flags, dataDir: c.coordinatorDir })
  const again = plane.router
  const view = await waitForView(c, again.url, (v) => v.epoch >= up.epoch)
  t.equal(view.epoch, up.epoch, 'same epoch')
  t.same(view.groups.map((g) => [g.id, g.weight, g.nodes[0]?.url]), up.groups.map((g) => [g.id, g.weight, g.nodes[0]?.url]), 'same groups, weights and nodes as before')
  t.match(plane.coordinator.output(), /"level":"warn"/, 'differing --group flags are reported with a warning')
  let lost = 0
  for (let i = 0; i < 30; i++) {
    const r = await http.get(again.url, `rt/${i}`)
    if (r.status !== 200 || r.text() !== `v${i}`) lost++
  }
  t.equal(lost, 0, 'every key is found through the restarted router')

  // SIGTERM while new connections are still arriving: connections accepted during the
  // drain and answered must not keep the router alive while the client keeps them open.
  const cold = new HttpClient({ connections: 64 })
  t.teardown(() => cold.close())
  const burst = Array.from({ length: 30 }, async (_, i) => await cold.get(again.url, `rt/${i}`).then((r) => r.status, (err: Error) => err.message))
  await sleep(2)
  const coldTermAt = Date.now()
  again.signal('SIGTERM')
  const burstResults = await Promise.all(burst)
  const coldExit = await Promise.race([again.exited, sleep(15_000).then(() => 'still running' as const)])
  const coldTook = Date.now() - coldTermAt
  t.ok(burstResults.every((r) => r === 200 || typeof r === 'string'), `requests during the drain: 200 or refused (${burstResults.filter((r) => r === 200).length} answered)`)
  t.ok(coldExit !== 'still running' && coldTook < 10_000, `router exits within 10 s of SIGTERM with client connections open (coldTook ${coldTook} ms${coldExit === 'still running' ? ', still running' : ''})`)
  if (coldExit === 'still running') {
    again.signal('SIGKILL')
    await again.exited
  }
})

/**
 * A request in flight when SIGTERM arrives (its body still arriving) must be answered,
 * and its kept-alive connection must not keep the router from exiting: the client here
 * holds the connection open after the answer, as any pooling HTTP client does.
 */
t.test('router: a request in flight at SIGTERM is answered and does not hold the exit', async (t) => {
  const c = await startCluster(t, { name: 'router-drain', groups: 1, workers: 1 })
  const port = Number(new URL(c.routerUrl).port)
  const socket = connect({ host: '127.0.0.1', port })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let received = ''
  socket.on('data', (d: Buffer) => { received += d.toString('latin1') })
  let closedByRouter = false
  socket.on('close', () => { closedByRouter = true })
  socket.on('error', () => undefined)
  socket.write(`PUT ${kvPath('drain/slow')} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello`)
  await sleep(200)
  const termAt = Date.now()
  c.router.signal('SIGTERM')
  await sleep(200)
  socket.write('world')
  const deadline = Date.now() + 5000
  while (!received.includes('\r\n\r\n') && Date.now() < deadline) await sleep(20)
  t.match(received, /^HTTP\/1\.1 201 /, `the in-flight PUT is answered 201 (got ${JSON.stringify(received.slice(0, 60))})`)
  const exit = await Promise.race([c.router.exited, sleep(15_000).then(() => 'still running' as const)])
  const took = Date.now() - termAt
  t.ok(exit !== 'still running' && took < 10_000, `router exits within 10 s although the client keeps its connection open (took ${took} ms${exit === 'still running' ? ', still running' : ''}; connection closed by router: ${String(closedByRouter)}; response Connection header: ${/\r\nconnection: *([^\r]*)/i.exec(received)?.[1] ?? 'none'})`)
  if (exit === 'still running') {
    c.router.signal('SIGKILL')
    await c.router.exited
  } else {
    t.same(exit, { code: 0, signal: null }, 'exit code 0')
  }
  t.equal((await c.http.get(c.primaries[0]!.url, 'drain/slow')).text(), 'helloworld', 'the value was written')
})

t.test('router: no groups, and bad configuration', async (t) => {
  const c = await startCluster(t, { name: 'router-cfg', groups: 1, workers: 1 })
  const empty = (await startControlIn(c, { dataDir: join(c.tmp, 'empty-coordinator') })).router
  const res = await c.http.put(empty.url, 'k', 'v')
  t.equal(res.status, 503, 'a router with no groups answers 503')
  t.match(res.json(), { error: 'unavailable' }, 'as a JSON unavailable error')
  t.equal((await c.http.get(empty.url, 'k')).status, 503, 'GET too')

  const refuse = async (groups: string[], extraArgs: string[] = []): Promise<LaunchError | undefined> => {
    try {
      await startControlIn(c, { groups, extraArgs, dataDir: join(c.tmp, `bad-${Math.random().toString(36).slice(2)}`) })
      return undefined
    } catch (err) {
      if (err instanceof LaunchError) return err
      throw err
    }
  }
  const badSpec = await refuse(['g1'])
  t.ok(badSpec !== undefined, 'a --group without a url is refused')
  t.match(badSpec?.output ?? '', /g1/, 'and the message names it')
  const badUrl = await refuse(['g1=ftp://127.0.0.1:1'])
  t.match(badUrl?.output ?? '', /http/, 'a non-http node url is refused with a message')
  const dup = await refuse([`g1=${c.primaries[0]!.url}`, `g1=${c.primaries[0]!.url}`])
  t.match(dup?.output ?? '', /twice/, 'a duplicate group id is refused')
  const badInt = await refuse([`g1=${c.primaries[0]!.url}`], ['--retry-timeout-ms', 'soon'])
  t.match(badInt?.output ?? '', /--retry-timeout-ms must be an integer/, 'a bad integer flag is refused')
})
