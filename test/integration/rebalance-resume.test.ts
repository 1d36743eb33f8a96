import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startCluster, sleep } from '../harness/cluster'
import { LoadGenerator, formatStats } from '../harness/history'
import {
  addGroup, checkPlacement, clusterView, keyRange, killHard, preload, readAll, rebalanceProgress, ringOf,
  startGroupNode, startCoordinatorAt, waitForRebalance, RetryingHttpClient, PHASE_ORDER
} from '../harness/rebalance'
import { GroupRing } from '../../src/ring/ring'

/**
 * The coordinator persists a rebalance's state, so one that is SIGKILLed mid-way and
 * restarted on the same data dir resumes it (DESIGN: Rebalancing, "a coordinator
 * restart resumes it"; Guarantee 1 includes a coordinator restart).
 */

const SLOW = ['--rebalance-rows-per-sec', '700', '--rebalance-batch', '100']
const CONNECTIONS = 16

t.test('coordinator SIGKILLed mid-copy and restarted on the same dir and port: the add resumes, no write lost', async (t) => {
  const c = await startCluster(t, { name: 'rb-resume', groups: 3, workers: 1, routerArgs: SLOW })
  const http = new RetryingHttpClient(30_000, { connections: CONNECTIONS })
  t.teardown(async () => { await http.close() })

  const preloaded = keyRange('resume/pre', 5000)
  const preValue = (k: string): string => `v0:${k}`
  await preload(c.http, c.routerUrl, preloaded, preValue)
  const before = await clusterView(c.http, c.routerUrl)
  const g4 = await startGroupNode(c, 'g4')

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 60, durationMs: 120_000, maxOpsPerClient: 50_000 }, http)
  const running = load.run()
  await load.waitForOps(300)
  const added = await addGroup(c.http, c.routerUrl, { id: 'g4', url: g4.url })
  t.equal(added.status, 202, `add accepted: ${added.text.slice(0, 200)}`)

  const atKill = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying' && p.scanned >= 800, { what: 'copying with rows scanned', timeoutMs: 30_000 })
  const viewAtKill = await clusterView(c.http, c.routerUrl)
  t.ok(viewAtKill.handover !== undefined, 'the map is in handover when the coordinator dies')
  const port = Number(new URL(c.coordinator.url).port)
  const opsAtKill = load.completedOps()
  await killHard(c.coordinator)
  t.comment(`SIGKILLed the coordinator (pid ${c.coordinator.pid}) at ${JSON.stringify(atKill)}, ${opsAtKill} ops done`)
  await sleep(500) // the data plane runs on without its coordinator for a while

  const restarted = await startCoordinatorAt(c, { name: 'coordinator-restarted', dataDir: c.coordinatorDir, port, extraArgs: SLOW })
  t.equal(restarted.url, c.coordinator.url, 'the restarted coordinator listens on the same url')
  const resumed = await rebalanceProgress(c.http, c.routerUrl)
  t.equal(resumed?.id, atKill.id, 'the restarted coordinator knows the same rebalance')
  t.ok(resumed !== null && PHASE_ORDER.indexOf(resumed.phase) >= PHASE_ORDER.indexOf('copying'), `it did not go back before copying (phase ${resumed?.phase ?? 'none'})`)

  const seen = new Set<string>()
  const done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { seen, what: 'done after the restart', timeoutMs: 90_000 })
  const opsAtDone = load.completedOps()
  await sleep(500)
  load.stop()
  const stats = await running
  t.comment(`after the restart: phases ${PHASE_ORDER.filter((p) => seen.has(p)).join(' -> ')}; at done ${JSON.stringify(done)}`)
  t.comment(`load: ${formatStats(stats)}`)
  t.match(restarted.output(), /"event":"rebalance-resume"/, 'the restarted coordinator logged that it resumed the rebalance')
  t.ok(done.scanned >= atKill.scanned, `the copy went on from where it was (scanned ${atKill.scanned} at the kill, ${done.scanned} at done)`)
  t.ok(opsAtDone - opsAtKill >= 200, `the load ran on after the kill (${opsAtDone - opsAtKill} ops between the kill and done)`)
  // The router routes by the map it follows, so the control plane's death is not the clients' business.
  t.same(stats.failures, [], 'no client request failed while the coordinator was dead and after')

  const report = await load.verify()
  t.equal(report.staleReads.length, 0, `no stale read across the restart\n${report.text}`)
  t.equal(report.lostWrites.length, 0, `every key reads back its last acknowledged state\n${report.text}`)
  t.ok(report.ok, `history checks out: ${JSON.stringify(report.counts)}\n${report.text}`)

  const after = await clusterView(c.http, c.routerUrl)
  t.equal(after.epoch, before.epoch + 2, `the resumed add still published exactly two maps: epoch ${before.epoch} -> ${after.epoch}`)
  t.ok(after.groups.some((g) => g.id === 'g4' && g.state === 'active'), 'g4 is active')
  const all = [...preloaded, ...load.checker.trackedKeys()]
  const { values, errors } = await readAll(c.http, c.routerUrl, all)
  t.same(errors, [], 'every key could be read back')
  const wrongPre = preloaded.filter((k) => values.get(k) !== preValue(k))
  t.same(wrongPre.slice(0, 10), [], `every preloaded key still holds its value (${wrongPre.length} do not)`)
  await checkPlacement(t, c.http, after, values)
})

/**
 * The coordinator installs a map on every node before it persists and publishes it
 * (DESIGN: install before publish). A coordinator killed between the two comes back
 * with the older map persisted, while the nodes already hold the newer one. This
 * rewinds the coordinator's files to exactly that moment (the fencing step of an add:
 * cluster.json still at the old epoch, rebalance.json in phase fencing, every node at
 * the handover epoch) and checks that the restarted coordinator recovers: the add
 * finishes and every key stays readable and writable.
 */
t.test('coordinator killed between installing the handover map and publishing it: the add still finishes', async (t) => {
  // A crawl while the first router runs: the kill comes before (almost) any row is copied.
  const c = await startCluster(t, { name: 'rb-window', groups: 3, workers: 1, routerArgs: ['--rebalance-rows-per-sec', '5', '--rebalance-batch', '5'] })
  const keys = keyRange('window', 2000)
  await preload(c.http, c.routerUrl, keys, (k) => `w0:${k}`)
  const before = await clusterView(c.http, c.routerUrl)
  const routerDir = c.coordinatorDir
  const mapAtStart = readFileSync(join(routerDir, 'cluster.json'))
  const g4 = await startGroupNode(c, 'g4')
  const added = await addGroup(c.http, c.routerUrl, { id: 'g4', url: g4.url })
  t.equal(added.status, 202, 'add accepted')
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying', { what: 'copying', timeoutMs: 30_000 })
  const port = Number(new URL(c.coordinator.url).port)
  await killHard(c.coordinator)

  // Rewind the coordinator to "installed on every node, not yet persisted".
  writeFileSync(join(routerDir, 'cluster.json'), mapAtStart)
  const statePath = join(routerDir, 'rebalance.json')
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as { phase: string, sources: Record<string, unknown>, lastError?: string }
  state.phase = 'fencing'
  for (const id of Object.keys(state.sources)) state.sources[id] = { cursor: 0, done: false, scanned: 0, copied: 0 }
  delete state.lastError
  writeFileSync(statePath, JSON.stringify(state))
  for (const url of [...before.groups.map((g) => g.nodes[0]!.url), g4.url]) {
    const h = await c.http.getJson<{ epoch: number }>(`${url}/healthz`)
    t.equal(h.epoch, before.epoch + 1, `${url} holds the handover epoch ${before.epoch + 1} (the coordinator's file says ${before.epoch})`)
  }

  const restarted = await startCoordinatorAt(c, { name: 'coordinator-restarted', dataDir: routerDir, port, extraArgs: ['--rebalance-rows-per-sec', '0'] })
  let done
  try {
    done = await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 25_000 })
  } catch (err) {
    const stuck = restarted.output().split('\n').filter((l) => /startup-install-retry|rebalance-retry/.test(l)).slice(-2).join('\n')
    t.fail(`the restarted coordinator never finished the add: ${(err as Error).message}\nits log: ${stuck}`)
  }
  if (done !== undefined) t.pass(`the add finished: ${JSON.stringify(done)}`)

  // Whatever the coordinator does, the keys that move must stay readable and writable.
  const view = await clusterView(c.http, c.routerUrl)
  const oldRing = ringOf(before)
  const newRing = new GroupRing([...oldRing.members, { id: 'g4', weight: 1 }], before.ring)
  const moving = keys.filter((k) => oldRing.ownerOf(k) !== newRing.ownerOf(k)).slice(0, 10)
  const reads = await Promise.all(moving.map(async (k) => await c.http.get(c.routerUrl, k)))
  t.same(reads.map((r) => r.status), moving.map(() => 200), `moving keys are readable through the router (epoch ${view.epoch}): ${reads.map((r) => r.status).join(',')} ${reads.find((r) => r.status !== 200)?.text().slice(0, 200) ?? ''}`)
  const writes = await Promise.all(moving.map(async (k) => await c.http.put(c.routerUrl, k, `w1:${k}`)))
  t.same(writes.map((r) => r.status), moving.map(() => 200), `moving keys are writable through the router: ${writes.map((r) => r.status).join(',')} ${writes.find((r) => r.status !== 200)?.text().slice(0, 200) ?? ''}`)
  if (done !== undefined) {
    const after = await clusterView(c.http, c.routerUrl)
    const { values, errors } = await readAll(c.http, c.routerUrl, keys)
    t.same(errors, [], 'every key could be read back')
    const written = new Set(moving.filter((_, i) => writes[i]?.status === 200))
    const wrong = keys.filter((k) => values.get(k) !== (written.has(k) ? `w1:${k}` : `w0:${k}`))
    t.same(wrong.slice(0, 10), [], `every key holds its latest value (${wrong.length} do not)`)
    await checkPlacement(t, c.http, after, values)
  }
})

/**
 * A graceful stop (SIGTERM) lets the coordinator's node calls in flight finish for a
 * moment (coordinator/active.ts, CALLS_GRACE_MS), then gives them up: a rebalance import
 * waiting on a target that does not answer (frozen) would otherwise hold the stop for the
 * call's 30 s timeout. Restarted, the coordinator resumes the add from its saved progress.
 */
t.test('coordinator stopped (SIGTERM) while its rebalance waits on a frozen target: it stops at once, and resumes when restarted', async (t) => {
  const c = await startCluster(t, { name: 'rb-sigterm', groups: 2, replicas: 1, workers: 0, routerArgs: ['--rebalance-rows-per-sec', '100', '--rebalance-batch', '20'] })
  const keys = keyRange('sigterm', 1000)
  await preload(c.http, c.routerUrl, keys, (k) => `s0:${k}`)
  const g3 = await startGroupNode(c, 'g3', { workers: 0 })
  t.teardown(() => { g3.signal('SIGCONT') })
  const added = await addGroup(c.http, c.routerUrl, { id: 'g3', url: g3.url })
  t.equal(added.status, 202, 'g3 is being added')
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'copying' && p.scanned > 0, { what: 'the add copying', timeoutMs: 60_000 })
  g3.signal('SIGSTOP')
  let scanned = -1
  let since = Date.now()
  await waitForRebalance(c.http, c.routerUrl, (p) => {
    if (p.scanned !== scanned) [scanned, since] = [p.scanned, Date.now()]
    return p.phase === 'copying' && Date.now() - since > 1500
  }, { what: 'the copy waiting on the frozen g3', timeoutMs: 60_000 })

  const port = Number(new URL(c.coordinator.url).port)
  const sent = Date.now()
  c.coordinator.signal('SIGTERM')
  const status = await c.coordinator.exited
  const tookMs = Date.now() - sent
  t.equal(status.code, 0, `the coordinator stopped cleanly (code ${String(status.code)}, signal ${String(status.signal)})`)
  // The import waits 30 s for its answer; the grace is 3 s. 20 s leaves room for a busy machine.
  t.ok(tookMs < 20_000, `it stopped in ${tookMs} ms, without waiting out the import's 30 s timeout`)
  // Giving the calls up is the coordinator's doing: its lease rounds stop first, so a renewal it
  // abandoned is not taken for a primary that stopped answering (logged, counted toward a failover).
  const afterStop = c.coordinator.output().split('\n').filter((line) => {
    const at = /"time":"([^"]+)"/.exec(line)?.[1]
    return at !== undefined && Date.parse(at) >= sent
  })
  t.same(afterStop.filter((line) => /"event":"(lease-failed|failover|primary-recovered)"/.test(line)), [], 'no lease renewal failed, nothing failed over, while it stopped')

  g3.signal('SIGCONT')
  const restarted = await startCoordinatorAt(c, { name: 'coordinator-restarted', dataDir: c.coordinatorDir, port, extraArgs: ['--rebalance-rows-per-sec', '0'] })
  await waitForRebalance(c.http, c.routerUrl, (p) => p.phase === 'done', { what: 'done after the restart', timeoutMs: 90_000 })
  t.match(restarted.output(), /"event":"rebalance-resume"/, 'the restarted coordinator resumed the rebalance')
  const after = await clusterView(c.http, c.routerUrl)
  const { values, errors } = await readAll(c.http, c.routerUrl, keys)
  t.same(errors, [], 'every key could be read back')
  const wrong = keys.filter((k) => values.get(k) !== `s0:${k}`)
  t.same(wrong.slice(0, 10), [], `every key holds its value (${wrong.length} do not)`)
  await checkPlacement(t, c.http, after, values)
})
