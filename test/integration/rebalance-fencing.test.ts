import t, { type Test } from 'tap'
import { cpSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { startCluster, waitFor, type TestCluster } from '../harness/cluster'
import type { HttpClient } from '../harness/http'
import {
  addGroup, admin, checkPlacement, clusterView, keyRange, preload, primaryOf, rawRow, readAll, rebalanceProgress,
  removeGroup, ringOf, startGroupNode, startCoordinatorAt, startRouterFor, waitForRebalance
} from '../harness/rebalance'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { GroupRing } from '../../src/ring/ring'

/**
 * Fencing during and after a rebalance (DESIGN: Guarantees 2, 3 and 5; "Epochs and
 * fencing"): a node refuses writes to keys it handed over whatever epoch the sender
 * claims, serves fallback reads only to senders at its current epoch while the handover
 * lasts, and a router still routing by the old map can neither write a moved key to
 * its old owner nor read a stale value. Bad admin requests are refused and change nothing.
 */

interface Outcome { status: number, body: string }

async function direct (http: HttpClient, method: 'GET' | 'PUT' | 'DELETE', node: string, key: string, headers: Record<string, string>, body?: string): Promise<Outcome & { json: any, contentType: string | undefined }> {
  const res = method === 'GET' ? await http.get(node, key, headers) : method === 'PUT' ? await http.put(node, key, body ?? '', headers) : await http.del(node, key, headers)
  let json: any
  try { json = JSON.parse(res.text()) } catch { json = undefined }
  return { status: res.status, body: res.text(), json, contentType: res.header('content-type') }
}

function misdirected (t: Test, r: { status: number, json: any, contentType: string | undefined, body: string }, epoch: number, what: string): void {
  t.equal(r.status, 421, `${what}: 421 (${r.body.slice(0, 160)})`)
  t.match(r.contentType ?? '', /application\/json/, `${what}: JSON error body`)
  t.equal(r.json?.error, 'misdirected', `${what}: error misdirected`)
  t.equal(r.json?.epoch, epoch, `${what}: carries the node's epoch ${epoch}`)
}

t.test('a node refuses moved keys whatever epoch the sender claims; a stale router cannot write to an old owner', async (t) => {
  const c = await startCluster(t, { name: 'rb-fence', groups: 3, workers: 1, routerArgs: ['--rebalance-rows-per-sec', '400', '--rebalance-batch', '50'] })
  const { http } = c
  const keys = keyRange('fence', 3000)
  const v0 = (k: string): string => `v0:${k}`
  const etags = await preload(http, c.routerUrl, keys, v0)
  const expected = new Map<string, string | null>(keys.map((k) => [k, v0(k)]))

  const before = await clusterView(http, c.routerUrl)
  const E0 = before.epoch
  // A second router following a second coordinator that holds a copy of the map as it is before the add.
  const staleDir = join(c.tmp, 'coordinator-stale')
  cpSync(c.coordinatorDir, staleDir, { recursive: true })
  rmSync(join(staleDir, 'rebalance.json'), { force: true })
  const staleCoordinator = await startCoordinatorAt(c, { name: 'coordinator-stale', dataDir: staleDir })
  const stale = await startRouterFor(c, { name: 'router-stale', coordinator: staleCoordinator.url })
  await waitFor(async () => (await clusterView(http, stale.url).catch(() => undefined))?.epoch === E0, 30_000, 'the stale router follows its coordinator')
  t.equal((await clusterView(http, stale.url)).epoch, E0, `the stale router routes by epoch ${E0}`)

  const oldRing = ringOf(before)
  const newRing = new GroupRing([...oldRing.members, { id: 'g4', weight: 1 }], before.ring)
  const moving = keys.filter((k) => oldRing.ownerOf(k) !== newRing.ownerOf(k))
  t.ok(moving.length > 300 && moving.every((k) => newRing.ownerOf(k) === 'g4'), `${moving.length} keys move, all to g4`)
  const url = (g: string, view: ClusterView = before): string => primaryOf(view, g)
  // Sources are copied in ring order (g1, g2, g3): g3's keys reach g4 last.
  const lateMovers = moving.filter((k) => oldRing.ownerOf(k) === 'g3')
  const earlyMovers = moving.filter((k) => oldRing.ownerOf(k) === 'g1')
  const staying = keys.filter((k) => oldRing.ownerOf(k) === newRing.ownerOf(k) && newRing.ownerOf(k) === 'g1')

  const g4 = await startGroupNode(c, 'g4')
  const added = await addGroup(http, c.routerUrl, { id: 'g4', url: g4.url })
  t.equal(added.status, 202, 'add accepted')
  await waitForRebalance(http, c.routerUrl, (p) => p.phase === 'copying', { what: 'copying', timeoutMs: 30_000 })
  const during = await clusterView(http, c.routerUrl)
  const E1 = during.epoch
  t.equal(E1, E0 + 1, 'the handover map is published')
  t.ok(during.handover !== undefined, '/cluster shows the handover')

  await t.test('during the handover', async (t) => {
    const g3 = url('g3')
    const g1 = url('g1')
    const uncopied: string[] = []
    for (const k of lateMovers) {
      if (uncopied.length >= 6) break
      if (await rawRow(http, g4.url, k) === undefined) uncopied.push(k)
    }
    t.equal(uncopied.length, 6, 'found moving keys not copied to g4 yet')
    const [k1, k2, k3, k4, k5, k6] = uncopied as [string, string, string, string, string, string]

    misdirected(t, await direct(http, 'PUT', g3, k1, { 'x-shardkv-epoch': String(E0) }, 'x'), E1, 'PUT of a moving key at its old owner with the old epoch')
    misdirected(t, await direct(http, 'PUT', g3, k1, { 'x-shardkv-epoch': String(E1) }, 'x'), E1, 'PUT of a moving key at its old owner with the current epoch')
    misdirected(t, await direct(http, 'PUT', g3, k1, {}, 'x'), E1, 'PUT of a moving key at its old owner without an epoch')
    misdirected(t, await direct(http, 'DELETE', g3, k1, { 'x-shardkv-epoch': String(E0) }), E1, 'DELETE of a moving key at its old owner')
    misdirected(t, await direct(http, 'GET', g3, k1, { 'x-shardkv-epoch': String(E1) }), E1, 'GET of a moving key at its old owner without the fallback header')
    misdirected(t, await direct(http, 'GET', g3, k1, { 'x-shardkv-epoch': String(E0), 'x-shardkv-fallback': '1' }), E1, 'fallback GET at the old owner with the old epoch')
    misdirected(t, await direct(http, 'GET', g1, k1, { 'x-shardkv-epoch': String(E1), 'x-shardkv-fallback': '1' }), E1, 'fallback GET at a node that never owned the key')
    const fallback = await direct(http, 'GET', g3, k1, { 'x-shardkv-epoch': String(E1), 'x-shardkv-fallback': '1' })
    t.same([fallback.status, fallback.body], [200, v0(k1)], 'fallback GET at the old owner with the current epoch serves the value')
    const rowAtSource = await rawRow(http, g3, k1)
    t.same(rowAtSource && { value: rowAtSource.value, version: `"${rowAtSource.version}"` }, { value: v0(k1), version: etags.get(k1) }, 'the refused writes changed nothing at the old owner')
    const rowAtTarget = await rawRow(http, g4.url, k1)
    t.ok(rowAtTarget === undefined || rowAtTarget.value === v0(k1), 'nor at the new owner')
    const viaRouter = await http.get(c.routerUrl, k1)
    t.same([viaRouter.status, viaRouter.text()], [200, v0(k1)], 'the router serves the moving key (fallback read)')

    // Copy on touch: a conditional write to a key not copied yet is judged against its real version.
    const cond = await http.put(c.routerUrl, k2, `v1:${k2}`, { 'if-match': etags.get(k2) ?? '' })
    t.equal(cond.status, 200, `If-Match with the pre-add ETag succeeds on an uncopied moving key (${cond.text().slice(0, 160)})`)
    if (cond.status === 200) expected.set(k2, `v1:${k2}`)
    const none = await http.put(c.routerUrl, k3, 'nope', { 'if-none-match': '*' })
    t.equal(none.status, 412, 'If-None-Match: * on an uncopied moving key that exists is 412')
    const wrongMatch = await http.del(c.routerUrl, k6, { 'if-match': '"not-the-version"' })
    t.equal(wrongMatch.status, 412, 'DELETE with a wrong If-Match on an uncopied moving key is 412')

    // The stale router: a write to a moving key must not land on its old owner.
    const staleWrite = await http.put(stale.url, k4, `stale:${k4}`)
    t.comment(`stale router PUT of a moving key during the handover: ${staleWrite.status} ${staleWrite.text().slice(0, 200)}`)
    const atOld = await rawRow(http, g3, k4)
    t.same(atOld && { value: atOld.value, version: `"${atOld.version}"` }, { value: v0(k4), version: etags.get(k4) }, 'the old owner still holds the pre-add row (the stale write did not land there)')
    if (staleWrite.status >= 200 && staleWrite.status < 300) {
      expected.set(k4, `stale:${k4}`)
      t.equal((await rawRow(http, g4.url, k4))?.value, `stale:${k4}`, 'the stale router\'s acknowledged write landed on the new owner')
    } else {
      t.ok(staleWrite.status >= 500, `the stale router's write failed with a 5xx after retrying (${staleWrite.status})`)
    }
    const k4now = await http.get(c.routerUrl, k4)
    t.equal(k4now.text(), expected.get(k4), 'the main router reads the moving key\'s latest acknowledged value')

    // ... nor read a value the new owner has replaced.
    const fresh = await http.put(c.routerUrl, k5, `v1:${k5}`)
    t.ok(fresh.status === 200 || fresh.status === 201, `a write to a moving key through the current router succeeds (${fresh.status})`)
    expected.set(k5, `v1:${k5}`)
    // INTERFACES: 201 when the key was created, 200 when replaced. The key exists (v0), only not at its new owner yet.
    t.equal(fresh.status, 200, 'it answers 200 (replaced), as the key existed before the add, not 201 (created)')
    t.equal((await rawRow(http, g4.url, k5))?.value, `v1:${k5}`, 'it landed on the new owner')
    const staleRead = await http.get(stale.url, k5)
    t.comment(`stale router GET of a moving key rewritten at its new owner: ${staleRead.status} ${staleRead.text().slice(0, 200)}`)
    t.ok(staleRead.status >= 500 || (staleRead.status === 200 && staleRead.text() === `v1:${k5}`), `the stale router does not return the replaced value (got ${staleRead.status} ${staleRead.text().slice(0, 80)})`)

    const staysPut = await http.put(stale.url, staying[0]!, `v1:${staying[0]!}`)
    t.ok(staysPut.status === 200, `the stale router still writes keys that do not move (${staysPut.status})`)
    if (staysPut.status === 200) expected.set(staying[0]!, `v1:${staying[0]!}`)

    const still = await rebalanceProgress(http, c.routerUrl)
    t.equal(still?.phase, 'copying', 'all of the above happened while the handover lasted')
  })

  const done = await waitForRebalance(http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 120_000 })
  const after = await clusterView(http, c.routerUrl)
  const E2 = after.epoch
  t.equal(E2, E0 + 2, `settled at epoch ${E2} (${JSON.stringify(done)})`)

  await t.test('after the add', async (t) => {
    const k = earlyMovers[0]!
    const g1 = url('g1')
    misdirected(t, await direct(http, 'PUT', g1, k, { 'x-shardkv-epoch': String(E0) }, 'x'), E2, 'PUT of a moved key at its old owner with the old epoch')
    misdirected(t, await direct(http, 'GET', g1, k, { 'x-shardkv-epoch': String(E2), 'x-shardkv-fallback': '1' }), E2, 'no fallback reads once settled')
    const purged = await Promise.all(moving.slice(0, 200).map(async (m) => await rawRow(http, url(oldRing.ownerOf(m)!), m)))
    t.equal(purged.filter((r) => r !== undefined).length, 0, 'the old owners hold no row of 200 moved keys')

    const k7 = earlyMovers.find((m) => expected.get(m) === v0(m) && m !== k)!
    const staleWrite = await http.put(stale.url, k7, `stale:${k7}`)
    t.comment(`stale router PUT of a moved key after the add: ${staleWrite.status} ${staleWrite.text().slice(0, 200)}`)
    t.equal(await rawRow(http, g1, k7), undefined, 'the stale write did not land on the old owner')
    if (staleWrite.status >= 200 && staleWrite.status < 300) {
      expected.set(k7, `stale:${k7}`)
      t.equal((await rawRow(http, g4.url, k7))?.value, `stale:${k7}`, 'the stale router\'s acknowledged write landed on the new owner')
    } else {
      t.ok(staleWrite.status >= 500, `the stale router's write failed with a 5xx after retrying (${staleWrite.status})`)
    }
    const staleRead = await http.get(stale.url, k7)
    t.ok(staleRead.status >= 500 || (staleRead.status === 200 && staleRead.text() === expected.get(k7)), `a stale router's read of a moved key is current or fails (${staleRead.status} ${staleRead.text().slice(0, 80)})`)

    const { values, errors } = await readAll(http, c.routerUrl, keys)
    t.same(errors, [], 'every key could be read back')
    const wrong = keys.filter((x) => values.get(x) !== expected.get(x)).map((x) => `${x}: ${String(values.get(x))} != ${String(expected.get(x))}`)
    t.same(wrong.slice(0, 10), [], `every key holds its latest acknowledged value (${wrong.length} do not)`)
    await checkPlacement(t, http, after, values)
  })
})

async function deadPort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => { typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port')) })
    })
  })
}

async function unchanged (t: Test, c: TestCluster, reference: ClusterView, what: string): Promise<void> {
  const now = await clusterView(c.http, c.routerUrl)
  t.equal(now.epoch, reference.epoch, `${what}: epoch unchanged (${now.epoch})`)
  t.same(now.groups.map((g) => [g.id, g.state, g.nodes.map((n) => n.url)]), reference.groups.map((g) => [g.id, g.state, g.nodes.map((n) => n.url)]), `${what}: groups unchanged`)
  t.same((await rebalanceProgress(c.http, c.routerUrl))?.id ?? null, reference.rebalance?.id ?? null, `${what}: no rebalance started`)
}

t.test('bad admin requests are refused with a clear 4xx and change nothing', async (t) => {
  const c = await startCluster(t, { name: 'rb-badadmin', groups: 2, workers: 1, routerArgs: ['--rebalance-rows-per-sec', '100', '--rebalance-batch', '20'] })
  const { http } = c
  const groupsUrl = `${c.routerUrl}/admin/groups`
  await preload(http, c.routerUrl, keyRange('bad', 600), (k) => `b:${k}`)
  const ref = await clusterView(http, c.routerUrl)
  const g2 = primaryOf(ref, 'g2')
  const expectError = async (r: Promise<{ status: number, body: any, contentType: string | undefined, text: string }>, status: number, code: string, what: string, reference: ClusterView = ref): Promise<void> => {
    const res = await r
    t.equal(res.status, status, `${what}: ${status} (${res.text.slice(0, 200)})`)
    t.equal(res.body?.error, code, `${what}: error ${code}`)
    t.ok(typeof res.body?.message === 'string' && res.body.message.length > 0, `${what}: a message says why`)
    t.match(res.contentType ?? '', /application\/json/, `${what}: JSON`)
    await unchanged(t, c, reference, what)
  }

  const fresh = await startGroupNode(c, 'g9')
  await expectError(addGroup(http, c.routerUrl, { id: 'g1', url: fresh.url }), 409, 'group_exists', 'adding an existing group id')
  await expectError(addGroup(http, c.routerUrl, { id: 'g9', url: g2 }), 409, 'group_exists', 'adding a node that already serves a group')
  await expectError(admin(http, 'POST', groupsUrl, '{"id": "g9", "url": '), 400, 'invalid_request', 'malformed JSON')
  await expectError(admin(http, 'POST', groupsUrl, '[]'), 400, 'invalid_request', 'a JSON array')
  await expectError(admin(http, 'POST', groupsUrl, { id: 'g9' }), 400, 'invalid_request', 'no url')
  await expectError(admin(http, 'POST', groupsUrl, { id: 'bad id!', url: fresh.url }), 400, 'invalid_request', 'an invalid group id')
  await expectError(admin(http, 'POST', groupsUrl, { id: 'g9', url: fresh.url, weight: 'heavy' }), 400, 'invalid_request', 'a weight that is not a number')
  await expectError(admin(http, 'POST', groupsUrl, { id: 'g9', url: fresh.url, weight: -1 }), 400, 'invalid_request', 'a negative weight')
  await expectError(admin(http, 'POST', groupsUrl, { id: 'g9', url: 'ftp://127.0.0.1:1' }), 400, 'invalid_request', 'a url that is not http')
  await expectError(addGroup(http, c.routerUrl, { id: 'g9', url: `http://127.0.0.1:${await deadPort()}` }), 400, 'invalid_request', 'a node that does not answer')
  await expectError(removeGroup(http, c.routerUrl, 'nope'), 404, 'no_such_group', 'removing a missing group')

  // A node that already holds keys would serve them as current once it owns them.
  const used = await startGroupNode(c, 'g8')
  t.equal((await http.put(used.url, 'leftover', 'old life')).status, 201, 'a key written straight to a node with no map')
  await expectError(addGroup(http, c.routerUrl, { id: 'g8', url: used.url }), 409, 'conflict', 'adding a node that is not empty')

  // While a rebalance runs, another is refused.
  const removing = await removeGroup(http, c.routerUrl, 'g2')
  t.equal(removing.status, 202, 'removing g2 starts a rebalance')
  const running = await clusterView(http, c.routerUrl)
  t.not(running.rebalance?.phase, 'done', 'the removal is still running')
  const busyAdd = await addGroup(http, c.routerUrl, { id: 'g9', url: fresh.url })
  t.same([busyAdd.status, busyAdd.body?.error], [409, 'rebalance_running'], `adding while a rebalance runs: 409 rebalance_running (${busyAdd.text.slice(0, 160)})`)
  const busyRemove = await removeGroup(http, c.routerUrl, 'g1')
  t.same([busyRemove.status, busyRemove.body?.error], [409, 'rebalance_running'], `removing while a rebalance runs: 409 rebalance_running (${busyRemove.text.slice(0, 160)})`)
  const during = await rebalanceProgress(http, c.routerUrl)
  t.equal(during?.id, removing.body?.rebalance?.id, 'the running rebalance is still the removal')
  await waitForRebalance(http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 60_000 })

  const one = await clusterView(http, c.routerUrl)
  t.same(one.groups.map((g) => g.id), ['g1'], 'one group left')
  await expectError(removeGroup(http, c.routerUrl, 'g1'), 409, 'last_group', 'removing the last group', one)
  const { values, errors } = await readAll(http, c.routerUrl, keyRange('bad', 600))
  t.same(errors, [], 'every key readable')
  t.same(keyRange('bad', 600).filter((k) => values.get(k) !== `b:${k}`), [], 'every key still holds its value')
})

t.test('two adds sent at once: one is refused, and no key is lost', async (t) => {
  const c = await startCluster(t, { name: 'rb-twoadds', groups: 2, workers: 1, routerArgs: ['--rebalance-rows-per-sec', '1000', '--rebalance-batch', '100'] })
  const { http } = c
  const keys = keyRange('twice', 1000)
  await preload(http, c.routerUrl, keys, (k) => `t:${k}`)
  const before = await clusterView(http, c.routerUrl)
  const a = await startGroupNode(c, 'g4')
  const b = await startGroupNode(c, 'g5')
  const [ra, rb] = await Promise.all([addGroup(http, c.routerUrl, { id: 'g4', url: a.url }), addGroup(http, c.routerUrl, { id: 'g5', url: b.url })])
  t.comment(`POST g4: ${ra.status} ${ra.text.slice(0, 120)}; POST g5: ${rb.status} ${rb.text.slice(0, 120)}`)
  t.same([ra.status, rb.status].sort(), [202, 409], 'exactly one add is accepted, the other is refused with 409')
  const refused = ra.status === 409 ? ra : rb
  t.equal(refused.body?.error, 'rebalance_running', 'the refusal says a rebalance is running')

  await waitForRebalance(http, c.routerUrl, (p) => p.phase === 'done', { what: 'done', timeoutMs: 60_000 })
  const after = await clusterView(http, c.routerUrl)
  const winner = ra.status === 202 ? 'g4' : 'g5'
  t.same(after.groups.map((g) => g.id).sort(), ['g1', 'g2', winner].sort(), `the map holds the accepted group only (${after.groups.map((g) => g.id).join(', ')})`)
  t.equal(after.epoch, before.epoch + 2, 'one rebalance: two maps published')
  const { values, errors } = await readAll(http, c.routerUrl, keys)
  t.same(errors, [], 'every key readable')
  const lost = keys.filter((k) => values.get(k) !== `t:${k}`)
  t.same(lost.slice(0, 10), [], `no key lost or changed (${lost.length} of ${keys.length} are)`)
  await checkPlacement(t, http, after, values)
})
