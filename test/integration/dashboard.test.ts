import t from 'tap'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import type { Browser, Page } from 'playwright-core'
import { startCluster, startShardIn, sleep, type TestCluster } from '../harness/cluster'
import { allReplicasInSync } from '../harness/cluster-view'
import { browserMissing, startBrowser } from '../harness/browser'
import { startCoordinatorAt } from '../harness/rebalance'
import { hashToken, newToken, type Role } from '../../src/auth/tokens'
import { ADMIN, BATCH_PATH, CLUSTER_PATH, DASHBOARD, KV_PREFIX } from '../../src/protocol/wire'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * The dashboard in a real headless browser (Debian's chromium through playwright-core),
 * against real clusters: a protected one with replicas, where a read token sees the
 * cluster and no admin action, an admin token sees them, and the open page follows a
 * rebalance, a switchover started from its button and a failover as they happen, without
 * a reload; and an --insecure one, which needs no token and whose router restarts under
 * the open page. Screenshots go to a temp dir (a test run leaves the tree clean) and are
 * checked to be PNG images; `SHARDKV_SCREENSHOT_DIR=docs npx tap test/integration/dashboard.test.ts`
 * refreshes the ones the README and docs show.
 */

const SHOTS = process.env.SHARDKV_SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'shardkv-dashboard-shots-'))
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
if (process.env.SHARDKV_SCREENSHOT_DIR === undefined) t.teardown(() => { rmSync(SHOTS, { recursive: true, force: true }) })
const T = { admin: newToken(), reader: newToken() }
const TOKENS: Array<{ name: string, roles: Role[], token: string }> = [
  { name: 'admin', roles: ['admin', 'read', 'write'], token: T.admin },
  { name: 'reader', roles: ['read'], token: T.reader }
]
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
const WAIT_MS = 30_000
/** Uncaught errors of every page, checked once all pages are done. */
const pageErrors: string[] = []

/** Tokens and a cluster secret in a temp dir of their own (the cluster's is made after its processes' flags). */
function credentials (t: tap.Test): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-dashboard-creds-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ tokens: TOKENS.map((x) => ({ name: x.name, sha256: hashToken(x.token), roles: x.roles })) }))
  writeFileSync(join(dir, 'secret'), newToken())
  return ['--tokens-file', join(dir, 'tokens.json'), '--cluster-secret-file', join(dir, 'secret')]
}

async function call (c: TestCluster, method: string, path: string, body?: unknown): Promise<any> {
  const res = await c.box.http.request(method, c.routerUrl + path, { headers: { ...bearer(T.admin), 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text()}`)
  return res.json()
}


const primaryOf = (v: ClusterView, group: string): string | undefined => v.groups.find((g) => g.id === group)?.nodes.find((n) => n.role === 'primary')?.url

/** Reads and writes through the router until stopped, so the page has rates to show. */
function keepTraffic (t: tap.Test, routerUrl: string): void {
  const agent = new Agent({ connections: 4 })
  let stopped = false
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      try {
        const key = `${KV_PREFIX}live%2F${i % 200}`
        await (await request(routerUrl + key, { method: 'PUT', dispatcher: agent, headers: bearer(T.admin), body: `v${i}` })).body.dump()
        await (await request(routerUrl + key, { dispatcher: agent, headers: bearer(T.admin) })).body.dump()
        await sleep(20)
      } catch {
        await sleep(200)
      }
    }
  })()
  t.teardown(async () => {
    stopped = true
    await loop
    await agent.destroy()
  })
}

async function openDashboard (t: tap.Test, browser: Browser, routerUrl: string, token?: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  t.teardown(async () => { await context.close().catch(() => undefined) })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`))
  await page.goto(`${routerUrl}${DASHBOARD.page}`)
  if (token !== undefined) {
    await page.locator('#auth').waitFor()
    await page.fill('#token', token)
    await page.click('#token-form button[type=submit]')
  }
  return page
}

async function screenshot (page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true })
  await page.screenshot({ path: join(SHOTS, name), fullPage: true })
  const png = readFileSync(join(SHOTS, name))
  if (png.length < 10_000 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error(`${name}: not a PNG screenshot of the page (${png.length} bytes)`)
}

/** True while the page is the document first loaded (a reload would drop the mark). */
async function sameDocument (page: Page): Promise<boolean> {
  return await page.evaluate('window.shardkvMark === true') === true
}

const missing = browserMissing()

t.test('the dashboard in a browser', { skip: missing ?? false }, async (t) => {
  const browser = await startBrowser(t)

  await t.test('a protected cluster with replicas', async (t) => {
    const args = credentials(t)
    const c = await startCluster(t, { name: 'dashboard', groups: 2, replicas: 1, shardArgs: args, clientHeaders: () => bearer(T.admin), routerArgs: [...args, '--rebalance-rows-per-sec', '300', '--rebalance-batch', '50'] })
    for (let i = 0; i < 1000; i += 250) {
      await call(c, 'POST', BATCH_PATH, { ops: Array.from({ length: 250 }, (_, j) => ({ op: 'put', key: `user/${i + j}`, value: Buffer.from(`value ${i + j}`).toString('base64') })) })
    }
    await c.waitForView(allReplicasInSync, 'every replica in sync')
    keepTraffic(t, c.routerUrl)

    await t.test('without a token the page asks for one', async (t) => {
      const page = await openDashboard(t, browser, c.routerUrl)
      await page.locator('#connection[data-state="locked"]').waitFor()
      t.ok(await page.locator('#auth').isVisible(), 'the token form')
      t.equal(await page.locator('article.group').count(), 0, 'no cluster shown')
    })

    await t.test('a read-only token sees every group and node, and no admin action', async (t) => {
      const page = await openDashboard(t, browser, c.routerUrl, T.reader)
      await page.locator('#connection[data-state="live"]').waitFor()
      await page.locator('article.group[data-group="g2"]').waitFor()
      for (const g of ['g1', 'g2']) t.equal(await page.locator(`article[data-group="${g}"] tbody tr`).count(), 2, `${g}: primary and replica`)
      t.match(await page.locator('#viewer').textContent(), /reader · read-only/)
      t.equal(await page.locator('button[data-action]').count(), 0, 'no admin button')
      t.ok(await page.locator('#auth').isHidden(), 'the token form is gone')
    })

    const page = await openDashboard(t, browser, c.routerUrl, T.admin)
    await page.locator('article.group[data-group="g2"]').waitFor()
    await page.evaluate('window.shardkvMark = true')

    await t.test('an admin token sees the nodes, their traffic and the admin actions', async (t) => {
      t.match(await page.locator('#viewer').textContent(), /admin · admin/)
      for (const [action, n] of [['switchover', 2], ['addReplica', 2], ['removeReplica', 2]] as const) {
        t.equal(await page.locator(`button[data-action="${action}"]`).count(), n, action)
      }
      t.equal(await page.locator('#ring g.current g[data-group]').count(), 2, 'an arc per group')
      await page.locator('#router-traffic', { hasText: /^[1-9][\d.,]*\/s requests · p99/ }).waitFor()
      await page.locator('article[data-group="g1"] .traffic', { hasText: /key ops [1-9][\d.,]*\/s · p99/ }).waitFor()
      for (const row of await page.locator('article.group tbody tr').all()) t.match(await row.textContent(), /up/)
      await screenshot(page, 'dashboard.png')
    })

    await t.test('adding a group shows the rebalance as it runs, without a reload', async (t) => {
      const epoch = Number(await page.locator('#epoch').textContent())
      const node = await startShardIn(c.box, { group: 'g3', nodeId: 'g3', dataDir: join(c.box.tmp, 'g3'), port: 0, workers: 1, extraArgs: args })
      await call(c, 'POST', ADMIN.groups, { id: 'g3', url: node.url })
      await page.locator('#rebalance[data-phase="copying"]').waitFor()
      await page.locator('#rebalance progress:not([value="0"])').waitFor()
      t.match(await page.locator('#rebalance').textContent(), /adding g3.*rows\/s · ETA/s)
      await screenshot(page, 'dashboard-rebalance.png')
      await page.locator('#rebalance[data-phase="done"]').waitFor({ timeout: 90_000 })
      await page.locator('article.group[data-group="g3"][data-state="active"]').waitFor()
      await page.locator('#ring g.current g[data-group="g3"]').waitFor()
      t.ok(Number(await page.locator('#epoch').textContent()) > epoch, 'the epoch moved on')
      t.ok(await sameDocument(page), 'the page was not reloaded')
    })

    await t.test('a switchover started from its button', async (t) => {
      const before = await c.waitForView(allReplicasInSync, 'g1 in sync again')
      const old = primaryOf(before, 'g1')
      page.once('dialog', (d) => { t.match(d.message(), /Switch over g1/); void d.accept() })
      await page.click('button[data-action="switchover"][data-group="g1"]')
      await page.locator('#operations li[data-kind="switchover"][data-state="done"][data-group="g1"]').waitFor()
      const after = await c.waitForView((v) => primaryOf(v, 'g1') !== old, 'a new g1 primary')
      await page.locator(`article[data-group="g1"] tr[data-role="primary"][data-node="${primaryOf(after, 'g1') ?? ''}"]`).waitFor()
      t.match(await page.locator('#notice').textContent(), /g1: .* is primary \(term \d+\)/)
      t.ok(await sameDocument(page), 'the page was not reloaded')
    })

    await t.test('a failover as it happens, then a replica removed from its button', async (t) => {
      const v = await c.waitForView((x) => x.groups.find((g) => g.id === 'g2')?.redundancy === 'ok', 'g2 with an in-sync replica')
      const old = primaryOf(v, 'g2') as string
      await c.killHard(c.byUrl(old))
      // Pending shows while a view has the primary down and no promotion yet; on a busy machine
      // the lease can run out before a health check marks it down, and the failover shows done.
      await page.locator('#operations li[data-kind="failover"][data-group="g2"]').first().waitFor()
      await screenshot(page, 'dashboard-failover.png')
      await page.locator('#operations li[data-kind="failover"][data-state="done"][data-group="g2"]').waitFor()
      const row = page.locator(`article[data-group="g2"] tr[data-node="${old}"]`)
      await page.locator(`article[data-group="g2"] tr[data-node="${old}"][data-role="replica"][data-health="down"]`).waitFor()
      page.once('dialog', (d) => { t.match(d.message(), /Remove the replica/); void d.accept() })
      await row.locator('button[data-action="removeReplica"]').click()
      await row.waitFor({ state: 'detached' })
      await page.locator('#operations li[data-kind="replica"][data-group="g2"]').waitFor()
      t.ok(await sameDocument(page), 'the page was not reloaded')
    })
  })

  await t.test('an --insecure cluster needs no token', async (t) => {
    const c = await startCluster(t, { name: 'dashboard-open', groups: 1, workers: 1 })
    const page = await openDashboard(t, browser, c.routerUrl)
    await page.locator('article.group[data-group="g1"]').waitFor()
    t.ok(await page.locator('#auth').isHidden(), 'no token form')
    t.match(await page.locator('#viewer').textContent(), /open cluster/)
    t.equal(await page.locator('button[data-action="addReplica"]').count(), 1, 'the admin API is open, so are its buttons')
    await page.evaluate('window.shardkvMark = true')
    // The coordinator restarts on its port: the page notices, and follows the new one by itself.
    const port = Number(new URL(c.coordinator.url).port)
    await c.coordinator.stop()
    await page.locator('#connection[data-state="error"]').waitFor()
    await startCoordinatorAt(c, { name: 'coordinator-again', dataDir: c.coordinatorDir, port })
    await page.locator('#connection[data-state="live"]').waitFor()
    await page.locator('article.group[data-group="g1"] tr[data-role="primary"][data-health="up"]').waitFor()
    t.ok(await sameDocument(page), 'reconnected without a reload')
  })

  t.same(pageErrors, [], 'no script error on any page')
})
