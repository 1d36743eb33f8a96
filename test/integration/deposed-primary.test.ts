import t from 'tap'
import { LoadGenerator, HistoryChecker, formatStats } from '../harness/history'
import { sleep, startCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, primaryUrl, replicaUrls, nodeView, replicaCaughtUp, describeView, keysOwnedBy, ringOfView } from '../harness/cluster-view'
import { ackedBurst, verifyKeys, compareReplica, directRequest, rawRow } from '../harness/replication'
import { HttpClient, type HttpResponse } from '../harness/http'

/**
 * "A former primary that still believes it is primary cannot make a write that any
 * client later reads" (DESIGN "Replication and failover": leases and terms). The
 * primary of g1 is frozen with SIGSTOP (supervisor and worker: it is not dead, it
 * just stops answering), the coordinator fails the group over to the replica under
 * term 2, and writes go on there. Then the old primary is continued with requests
 * already waiting in its socket and more arriving right after: PUTs and GETs sent
 * straight to it, carrying the old map's epoch, as a router that missed the failover
 * would send them. Its persisted map still says it is the primary of term 1.
 *
 * None of those PUTs may be acknowledged, none of their values may ever be read
 * through the router, no direct GET may return a value older than what the new
 * primary acknowledged, and the history of the normal load stays intact. The old
 * primary must end up as a replica of term 2 holding exactly the new primary's data.
 */

type Outcome = { kind: 'status', status: number, error: string, body: string } | { kind: 'error', error: string }

function outcome (res: HttpResponse | Error): Outcome {
  if (res instanceof Error) return { kind: 'error', error: `${res.name}${(res as { code?: string }).code === undefined ? '' : ` ${(res as { code?: string }).code ?? ''}`}` }
  let code = ''
  try { code = String(res.json<{ error?: string }>().error ?? '') } catch { /* not JSON */ }
  return { kind: 'status', status: res.status, error: code, body: res.text().slice(0, 160) }
}

function label (o: Outcome): string {
  return o.kind === 'error' ? o.error : `${o.status}${o.error === '' ? '' : ` ${o.error}`}`
}

t.test('a frozen primary, deposed by a failover and then continued, cannot make a write any client reads', async (t) => {
  const c = await startCluster(t, { name: 'deposed', groups: 2, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const group = 'g1'
  const old = c.byUrl(primaryUrl(view, group))
  const replica = c.byUrl(replicaUrls(view, group)[0] as string)
  const oldEpoch = view.epoch
  const run = Date.now().toString(36)

  // Keys written before the freeze and again after the failover: a direct read of the old value would be stale.
  const marks = new HistoryChecker()
  const marked = keysOwnedBy(view, group, 10, `marked-${run}`)
  await ackedBurst(c.http, c.routerUrl, marked, marks, 'before-freeze')
  // Fresh keys only the deposed primary is asked to write.
  const fresh = keysOwnedBy(view, group, 20, `deposed-${run}`)

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 8, keysPerClient: 12, durationMs: 120_000, maxOpsPerClient: 5000, requestTimeoutMs: 40_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  const direct = new HttpClient({ connections: 128 })
  t.teardown(async () => { await direct.close() })
  try {
    await load.waitForOps(300)
    const frozen = await c.freeze(old)
    t.equal(frozen.pids.length, 2, `SIGSTOPped ${group}'s primary: supervisor ${frozen.pids[0]}, worker ${frozen.pids.slice(1).join(', ')}`)

    view = await c.waitForView((v) => groupOf(v, group).term === 2 && primaryUrl(v, group) === replica.url, `${replica.url} primary of ${group} at term 2`, 90_000)
    const failoverMs = Date.now() - frozen.at
    t.comment(`FAILOVER OF A FROZEN PRIMARY: term 2 published ${failoverMs} ms after SIGSTOP: ${describeView(view)}`)
    await ackedBurst(c.http, c.routerUrl, marked, marks, 'after-failover')

    // Direct requests with the old epoch: a first wave waits in the frozen node's socket...
    const sent: Array<{ method: 'GET' | 'PUT', key: string, value?: string, wave: string, done: Promise<Outcome> }> = []
    // PUTs go to the fresh keys and half of the marked ones; GETs to the other half only
    // (a GET of a key it has just written locally would wait for that write's replication).
    const markedW = marked.slice(0, 5)
    const markedR = marked.slice(5)
    const fire = (wave: string): void => {
      for (const key of [...fresh, ...markedW]) {
        const value = `DEPOSED|${wave}|${key}`
        sent.push({ method: 'PUT', key, value, wave, done: directRequest(direct, old.url, 'PUT', key, oldEpoch, value, 8000).then(outcome) })
      }
      for (const key of markedR) sent.push({ method: 'GET', key, wave, done: directRequest(direct, old.url, 'GET', key, oldEpoch, undefined, 8000).then(outcome) })
    }
    fire('queued')
    await sleep(300)
    c.thaw(frozen.pids)
    const thawedAt = Date.now()
    // ...and more arrive right after it wakes up, for 3 s (until the coordinator has caught it up).
    for (let i = 0; Date.now() - thawedAt < 3000; i++) {
      fire(`after-thaw-${i}`)
      await sleep(150)
    }
    const results = await Promise.all(sent.map(async (s) => ({ ...s, outcome: await s.done })))
    const counts: Record<string, number> = {}
    for (const r of results) counts[`${r.method} ${label(r.outcome)}`] = (counts[`${r.method} ${label(r.outcome)}`] ?? 0) + 1
    t.comment(`DIRECT REQUESTS TO THE DEPOSED PRIMARY (old epoch ${oldEpoch}): ${JSON.stringify(counts)}`)

    const acknowledged = results.filter((r) => r.method === 'PUT' && r.outcome.kind === 'status' && r.outcome.status >= 200 && r.outcome.status < 300)
    t.same(acknowledged.map((r) => `${r.wave} ${r.key}: ${label(r.outcome)}`), [], `none of the ${results.filter((r) => r.method === 'PUT').length} direct PUTs was acknowledged`)
    const okPut = results.filter((r) => r.method === 'PUT' && r.outcome.kind === 'status' && !(r.outcome.status >= 200 && r.outcome.status < 300))
    const unexpected = okPut.filter((r) => r.outcome.kind === 'status' && ![421, 409, 503].includes(r.outcome.status))
    t.same(unexpected.map((r) => `${r.wave} ${r.key}: ${label(r.outcome)}`), [], 'every direct PUT that was answered got 421, 409 or 503')
    const staleReads = results.filter((r) => r.method === 'GET' && r.outcome.kind === 'status' && r.outcome.status === 200 &&
      !r.outcome.body.startsWith('after-failover|'))
    t.same(staleReads.map((r) => `${r.wave} ${r.key}: ${r.outcome.kind === 'status' ? r.outcome.body : ''}`), [], 'no direct GET returned a value older than what the new primary acknowledged')

    // The old primary becomes a replica of term 2: wiped and resynced from the new primary.
    view = await c.waitForView((v) => nodeView(v, old.url)?.inSync === true && nodeView(v, old.url)?.health === 'up', `${old.url} an in-sync replica (under load)`, 60_000)
    t.pass(`the deposed primary rejoined as a replica: ${describeView(view)}`)
    await load.waitForOps(load.completedOps() + 300)
    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write of the load lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)

    // Through the router: no value the deposed primary was asked to write is visible.
    const visible: string[] = []
    for (const key of [...fresh, ...marked]) {
      const res = await c.http.get(c.routerUrl, key)
      if (res.status === 200 && res.text().startsWith('DEPOSED|')) visible.push(`${key}: ${res.text()}`)
      if (res.status !== 200 && res.status !== 404) visible.push(`${key}: unexpected ${res.status} ${res.text().slice(0, 120)}`)
    }
    t.same(visible, [], `none of the ${fresh.length + marked.length} keys shows a value sent to the deposed primary`)
    await verifyKeys(c.http, c.routerUrl, marked, marks)
    t.ok(marks.report().ok, `the values acknowledged by the new primary read back: ${marks.report().text}`)

    view = await c.waitForView((v) => replicaCaughtUp(v, old.url), `${old.url} in sync with lag 0`, 30_000)
    const h = await c.health(old)
    t.equal(h.role, 'replica', 'the deposed primary now says replica')
    t.equal(h.term, 2, 'of term 2')
    t.equal(h.dataTerm, 2, 'and holds term-2 data (it resynced)')
    const ring = ringOfView(view)
    const groupKeys = [...load.checker.trackedKeys(), ...fresh, ...marked].filter((k) => ring.ownerOf(k) === group)
    const cmp = await compareReplica(c.http, replica.url, old.url, groupKeys)
    t.equal(cmp.replica.keys, cmp.primary.keys, `same live keys on the new primary and the deposed one (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
    t.same(cmp.mismatches, [], `${groupKeys.length} keys: the same rows on both nodes`)
    const leftovers: string[] = []
    for (const key of fresh) {
      for (const url of [old.url, replica.url]) {
        const row = await rawRow(c.http, url, key)
        if (row !== undefined) leftovers.push(`${url} ${key}: ${JSON.stringify(row)}`)
      }
    }
    t.same(leftovers, [], 'no node holds a row for a key only the deposed primary was asked to write')
  } finally {
    load.stop()
    await running.catch(() => undefined)
  }
})

/**
 * The same guarantee when the old primary keeps running, cut off from everyone who
 * reaches it by its map url (a black-holing TCP proxy stands in for the network): the
 * coordinator's lease renewals, health checks and map installs are lost, so it never
 * learns of the failover and its persisted map says "primary of term 1" the whole
 * time. Only its lease stops it. Requests with the old epoch sent straight to it (a
 * client or router on its side of the partition) must neither be acknowledged nor
 * read a value older than what the new primary acknowledged.
 */
t.test('a primary cut off by a network partition keeps running and believes it is primary: only its lease stops it', async (t) => {
  const c = await startCluster(t, { name: 'partitioned', groups: 2, replicas: 1, proxyPrimaries: ['g1'] })
  let view = await c.waitForView(allReplicasInSync, 'every replica in sync', 40_000)
  const group = 'g1'
  const old = c.byUrl(primaryUrl(view, group))
  const replica = c.byUrl(replicaUrls(view, group)[0] as string)
  const proxy = old.proxy
  if (proxy === undefined) throw new Error('g1\'s primary should sit behind a proxy')
  const oldEpoch = view.epoch
  const run = Date.now().toString(36)
  const marks = new HistoryChecker()
  const marked = keysOwnedBy(view, group, 10, `pmarked-${run}`)
  const fresh = keysOwnedBy(view, group, 20, `partitioned-${run}`)
  await ackedBurst(c.http, c.routerUrl, marked, marks, 'before-partition')

  const load = new LoadGenerator({ baseUrl: c.routerUrl, clients: 6, keysPerClient: 12, durationMs: 120_000, maxOpsPerClient: 5000, requestTimeoutMs: 40_000 })
  t.teardown(async () => { await load.close() })
  const running = load.run()
  const direct = new HttpClient({ connections: 64 })
  t.teardown(async () => { await direct.close() })
  try {
    await load.waitForOps(300)
    const cutAt = Date.now()
    proxy.partition()
    view = await c.waitForView((v) => groupOf(v, group).term === 2 && primaryUrl(v, group) === replica.url, `${replica.url} primary of ${group} at term 2`, 90_000)
    t.comment(`FAILOVER OF A PARTITIONED PRIMARY: term 2 published ${Date.now() - cutAt} ms after the partition: ${describeView(view)}`)
    await ackedBurst(c.http, c.routerUrl, marked, marks, 'after-failover')

    const h = await c.health(old)
    t.equal(h.role, 'primary', 'the cut-off node still believes it is the primary')
    t.equal(h.term, 1, 'of term 1')

    const sent: Array<{ method: 'GET' | 'PUT', key: string, done: Promise<Outcome> }> = []
    const started = Date.now()
    for (let i = 0; Date.now() - started < 2500; i++) {
      for (const key of [...fresh, ...marked.slice(0, 5)]) sent.push({ method: 'PUT', key, done: directRequest(direct, old.realUrl, 'PUT', key, oldEpoch, `DEPOSED|p${i}|${key}`, 10_000).then(outcome) })
      for (const key of marked.slice(5)) sent.push({ method: 'GET', key, done: directRequest(direct, old.realUrl, 'GET', key, oldEpoch, undefined, 10_000).then(outcome) })
      await sleep(250)
    }
    const results = await Promise.all(sent.map(async (s) => ({ ...s, outcome: await s.done })))
    const counts: Record<string, number> = {}
    for (const r of results) counts[`${r.method} ${label(r.outcome)}`] = (counts[`${r.method} ${label(r.outcome)}`] ?? 0) + 1
    t.comment(`DIRECT REQUESTS TO THE PARTITIONED PRIMARY (old epoch ${oldEpoch}): ${JSON.stringify(counts)}`)
    const acknowledged = results.filter((r) => r.method === 'PUT' && r.outcome.kind === 'status' && r.outcome.status >= 200 && r.outcome.status < 300)
    t.same(acknowledged.map((r) => `${r.key}: ${label(r.outcome)}`), [], `none of the ${results.filter((r) => r.method === 'PUT').length} direct PUTs was acknowledged`)
    const staleReads = results.filter((r) => r.method === 'GET' && r.outcome.kind === 'status' && r.outcome.status === 200 && !r.outcome.body.startsWith('after-failover|'))
    t.same(staleReads.map((r) => `${r.key}: ${r.outcome.kind === 'status' ? r.outcome.body : ''}`), [], 'no direct GET returned a value older than what the new primary acknowledged')
    const h2 = await c.health(old)
    t.equal(h2.role, 'primary', `it still believed it was the primary throughout (role ${h2.role}, term ${h2.term})`)

    // The partition heals: the coordinator catches the node up; it resyncs as a replica of term 2.
    proxy.heal()
    view = await c.waitForView((v) => nodeView(v, old.url)?.inSync === true && nodeView(v, old.url)?.health === 'up', `${old.url} an in-sync replica after the partition healed`, 60_000)
    t.pass(`after the partition healed it rejoined as a replica: ${describeView(view)}`)
    await load.waitForOps(load.completedOps() + 200)
    load.stop()
    const stats = await running
    t.comment(`load: ${formatStats(stats)}`)
    const report = await load.verify()
    t.equal(report.lostWrites.length, 0, `no acknowledged write of the load lost\n${report.text}`)
    t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
    t.ok(report.ok, `history: ${report.text}; counts ${JSON.stringify(report.counts)}`)
    const visible: string[] = []
    for (const key of [...fresh, ...marked]) {
      const res = await c.http.get(c.routerUrl, key)
      if (res.status === 200 && res.text().startsWith('DEPOSED|')) visible.push(`${key}: ${res.text()}`)
      if (res.status !== 200 && res.status !== 404) visible.push(`${key}: unexpected ${res.status} ${res.text().slice(0, 120)}`)
    }
    t.same(visible, [], `none of the ${fresh.length + marked.length} keys shows a value sent to the partitioned primary`)
    await verifyKeys(c.http, c.routerUrl, marked, marks)
    t.ok(marks.report().ok, `the values acknowledged by the new primary read back: ${marks.report().text}`)

    view = await c.waitForView((v) => replicaCaughtUp(v, old.url), `${old.url} in sync with lag 0`, 30_000)
    const h3 = await c.health(old)
    t.equal(h3.role, 'replica', 'now a replica')
    t.equal(h3.dataTerm, 2, 'holding term-2 data (it resynced)')
    const ring = ringOfView(view)
    const groupKeys = [...load.checker.trackedKeys(), ...fresh, ...marked].filter((k) => ring.ownerOf(k) === group)
    const cmp = await compareReplica(c.http, replica.url, old.url, groupKeys)
    t.equal(cmp.replica.keys, cmp.primary.keys, `same live keys on both nodes (${JSON.stringify(cmp.primary)} vs ${JSON.stringify(cmp.replica)})`)
    t.same(cmp.mismatches, [], `${groupKeys.length} keys: the same rows on both nodes`)
  } finally {
    proxy.heal()
    load.stop()
    await running.catch(() => undefined)
  }
})
