import t, { type Test } from 'tap'
import { shardkv } from '../harness/cli'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { localSandbox, type LocalSandbox, waitForView } from '../harness/local-launcher'
import { keyRange, preload } from '../harness/rebalance'
import { entryByUrl, readNodes } from '../../src/local/nodes-file'
import type { ClusterView } from '../../src/protocol/cluster-view'
import type { StatusRow } from '../../scripts/shardkv/status'
import type { GroupReport } from '../../scripts/shardkv/check'

/**
 * The `shardkv` command against a real local cluster (`shardkv start`'s own launcher,
 * with credentials: the CLI finds the admin token in --cluster-dir): the status table and
 * its JSON, a check of a healthy cluster, a planned failover, a rebalance followed by
 * watch, usage errors (exit 2), and a check that finds what was planted in a replica's
 * SQLite file (exit 3).
 */




const allInSync = (v: ClusterView): boolean => v.groups.every((g) => g.nodes.every((n) => n.health === 'up' && (n.role === 'primary' || (n.inSync === true && n.lag === 0))))
const primaryOf = (v: ClusterView, group: string): string | undefined => v.groups.find((g) => g.id === group)?.nodes.find((n) => n.role === 'primary')?.url
const cells = (line: string): string[] => line.split('|').slice(1, -1).map((c) => c.trim())

/** `shardkv status`: the table has a row per node of the view, and --json the same rows, typed. */
async function assertStatus (t: Test, conn: string[], view: ClusterView): Promise<void> {
  const status = await shardkv(['status', ...conn])
  t.equal(status.code, 0, `status exits 0: ${status.stderr}`)
  const lines = status.stdout.trimEnd().split('\n')
  t.match(lines[0], /^epoch \d+, 2 groups, 4 nodes$/, 'a summary line')
  t.same(cells(lines[2] ?? ''), ['GROUP', 'STATE', 'NODE', 'ROLE', 'TERM', 'POSITION', 'LAG', 'IN SYNC', 'HEALTH', 'EPOCH'], 'the header')
  const rows = lines.filter((s) => s.startsWith('| g')).map(cells)
  t.equal(rows.length, 4, 'a row per node')
  for (const g of view.groups) {
    for (const n of g.nodes) {
      const row = rows.find((r) => r[2] === n.url)
      t.match(row, [g.id, 'active', n.url, n.role, /^\d+$/, /^\d+$/, n.role === 'primary' ? '-' : /^\d+$/, n.role === 'primary' ? '-' : /^(true|false)$/, 'up', String(view.epoch)], `${g.id} ${n.role} ${n.url}`)
    }
  }
  const json = await shardkv(['status', ...conn, '--json'])
  t.equal(json.code, 0)
  const parsed = JSON.parse(json.stdout) as { epoch: number, nodes: StatusRow[] }
  t.equal(parsed.nodes.length, 4, '--json: the same rows')
  t.ok(parsed.nodes.every((r) => r.health === 'up' && (r.role === 'primary' ? r.inSync === null : typeof r.inSync === 'boolean')), '--json rows are typed')
}

/** The endpoints check reads through refuse bad input with a 4xx JSON error and change nothing. */
async function assertDigestRefusals (t: Test, box: LocalSandbox, view: ClusterView): Promise<void> {
  const digest = async (body: string, headers: Record<string, string> = {}): Promise<{ status: number, error: unknown }> => {
    const res = await box.http.request('POST', `${box.routerUrl}/admin/check/digest`, { body, headers: { 'content-type': 'application/json', ...headers } })
    return { status: res.status, error: (res.json<{ error?: unknown }>()).error }
  }
  const hostile: Array<[string, number, string]> = [
    ['{}', 400, 'invalid_request'],
    ['{"group":"g1"}', 400, 'invalid_request'],
    ['{"group":"g1","after":"","limit":0}', 400, 'invalid_request'],
    ['{"group":"g1","after":"","limit":"9"}', 400, 'invalid_request'],
    ['{"group":"g1","after":"","limit":1000000}', 400, 'invalid_request'],
    ['{"group":"nope","after":""}', 404, 'no_such_group'],
    ['[', 400, 'invalid_request']
  ]
  for (const [body, status, error] of hostile) t.match(await digest(body), { status, error }, `POST /admin/check/digest ${body}: ${status} ${error}`)
  t.match(await digest('{"group":"g1","after":""}', { authorization: 'Bearer skv_not-a-token' }), { status: 401 }, 'a bad token: 401')
  const g1 = entryByUrl(readNodes(box.dir) ?? [], primaryOf(view, 'g1') as string)
  const peer = await box.http.request('POST', `http://127.0.0.1:${String(g1?.peerPort)}/internal/digest`, { body: '{"after":""}', headers: { 'content-type': 'application/json' } })
  t.equal(peer.status, 401, 'a node\'s digest endpoint needs the cluster secret (an admin token is none)')
  const ok = await box.http.request('POST', `${box.routerUrl}/admin/check/digest`, { body: '{"group":"g1","after":"","limit":5}', headers: { 'content-type': 'application/json' } })
  t.match(ok.json(), { group: 'g1', after: '', done: false, nodes: [{ role: 'primary', page: { rows: 5 } }, { role: 'replica', page: { rows: 5 } }] }, 'a page of five rows from g1\'s primary and replica')
}

/** Usage errors: exit 2 and one clear line naming the mistake. */
async function assertUsageErrors (t: Test, conn: string[]): Promise<void> {
  const usage: Array<[string[], RegExp]> = [
    [['status', '--bogus'], /^shardkv status: unknown option '--bogus'/],
    [['nope'], /^shardkv: unknown command 'nope'/],
    [['failover', ...conn], /^shardkv failover: --group is required/],
    [['check', '--page-rows', '0'], /^shardkv check: option '--page-rows <n>' argument '0' is invalid/],
    [['add-shard', '--weight', 'x', ...conn], /^shardkv add-shard: --weight/],
    [['add-shard', '--registered', ...conn], /^shardkv add-shard: --registered takes the group's registered nodes: name it with --id/]
  ]
  for (const [args, re] of usage) {
    const r = await shardkv(args)
    t.equal(r.code, 2, `${args.slice(0, 2).join(' ')}: exit 2`)
    t.match(r.stderr, re, `${args.slice(0, 2).join(' ')}: ${r.stderr.split('\n')[0] ?? ''}`)
  }
}

/**
 * Inconsistencies in g1's replica's SQLite file, as a disk or a hand could make them while
 * it runs: another version of one key, and one of g1's keys renamed to a key of g2.
 */
function plantInReplica (box: LocalSandbox, view: ClusterView): { replica: string, foreignKey: string, changed: string, renamed: string } {
  const replica = view.groups.find((g) => g.id === 'g1')?.nodes.find((n) => n.role === 'replica')?.url as string
  const entry = entryByUrl(readNodes(box.dir) ?? [], replica)
  const g2 = entryByUrl(readNodes(box.dir) ?? [], primaryOf(view, 'g2') as string)
  if (entry === undefined || g2 === undefined) throw new Error(`g1's replica ${replica} or g2's primary is not in nodes.json`)
  const source = new Database(join(g2.dataDir, 'shard.db'), { readonly: true })
  const foreignKey = (source.prepare('SELECT key FROM kv WHERE deleted = 0 ORDER BY key LIMIT 1').get() as { key: string }).key
  source.close()
  const db = new Database(join(entry.dataDir, 'shard.db'))
  try {
    db.pragma('busy_timeout = 10000')
    const live = db.prepare('SELECT key FROM kv WHERE deleted = 0 ORDER BY key').all() as Array<{ key: string }>
    const changed = live[1]?.key as string
    const renamed = live[live.length - 1]?.key as string
    db.prepare("UPDATE kv SET version = version || '-planted' WHERE key = ?").run(changed)
    db.prepare('UPDATE kv SET key = ? WHERE key = ?').run(foreignKey, renamed)
    return { replica, foreignKey, changed, renamed }
  } finally {
    db.close()
  }
}

t.test('shardkv status, check, failover, watch and usage errors against a local cluster', async (t) => {
  const box = await localSandbox(t, 'cli', { groups: 2, replicas: 1 })
  const conn = ['--router', box.routerUrl, '--cluster-dir', box.dir]
  // A slow rebalance (the router inherits the launcher's environment), so that watch has one to follow.
  const throttle = process.env.SHARDKV_REBALANCE_ROWS_PER_SEC
  process.env.SHARDKV_REBALANCE_ROWS_PER_SEC = '50'
  t.teardown(() => { if (throttle === undefined) delete process.env.SHARDKV_REBALANCE_ROWS_PER_SEC; else process.env.SHARDKV_REBALANCE_ROWS_PER_SEC = throttle })
  const l = await box.start()
  await l.waitFor(/local cluster is up/, 90_000)
  await waitForView(box, allInSync, 'every node up and in sync')
  await preload(box.http, box.routerUrl, keyRange('cli', 300), (k) => `v:${k}`)
  let view = await waitForView(box, allInSync, 'replicas caught up')

  await assertStatus(t, conn, view)
  const healthy = await shardkv(['check', ...conn])
  t.equal(healthy.code, 0, `check passes on a healthy cluster: ${healthy.stdout}${healthy.stderr}`)
  t.match(healthy.stdout, /^check: OK: 2 groups, 300 rows, epoch \d+$/m)
  await assertDigestRefusals(t, box, view)
  await assertUsageErrors(t, conn)

  // Planned failover: g1's replica becomes its primary; the data still checks out.
  const before = primaryOf(view, 'g1')
  const failover = await shardkv(['failover', ...conn, '--group', 'g1'])
  t.equal(failover.code, 0, `failover exits 0: ${failover.stderr}`)
  t.match(failover.stdout, /^switched g1 over from \S+ to \S+: term \d+/)
  view = await waitForView(box, (v) => primaryOf(v, 'g1') !== before && allInSync(v), 'g1 has a new primary, the old one in sync as its replica')
  t.pass(`g1's primary moved from ${String(before)} to ${String(primaryOf(view, 'g1'))}`)
  const after = await shardkv(['check', ...conn, '--json'])
  t.equal(after.code, 0, `check passes after the failover: ${after.stdout}`)

  // A rebalance, followed by watch; check afterwards finds every key on its new owner only.
  const add = await shardkv(['add-shard', ...conn, '--id', 'g3', '--workers', '1', '--no-wait', '--json'])
  t.equal(add.code, 0, `add-shard --no-wait exits 0: ${add.stderr.slice(-500)}`)
  t.match(JSON.parse(add.stdout), { group: 'g3', rebalance: { kind: 'add', group: 'g3' } }, 'add-shard --json says what it started')
  const watch = await shardkv(['watch', ...conn])
  t.equal(watch.code, 0, `watch exits 0: ${watch.stderr.slice(-500)}`)
  t.match(watch.stdout, /^rebalance: add-g3-\d+ \(add g3\) done at \S+, \d+ rows copied, \d+ purged\n$/, 'watch followed the rebalance until it was done')
  t.match(watch.stderr, /rebalance add-g3-\d+: copying .*\n(.*\n)*rebalance add-g3-\d+: done/, 'its progress went to stderr (a line per phase off a terminal)')
  view = await waitForView(box, allInSync, 'three groups serving')
  const three = await shardkv(['check', ...conn])
  t.equal(three.code, 0, `check passes after the rebalance: ${three.stdout}`)
  t.match(three.stdout, /^check: OK: 3 groups, 300 rows/m)

  const { replica, foreignKey, changed, renamed } = plantInReplica(box, view)
  const bad = await shardkv(['check', ...conn, '--json'])
  t.equal(bad.code, 3, `check exits 3: ${bad.stdout}${bad.stderr}`)
  const report = JSON.parse(bad.stdout) as { ok: boolean, groups: GroupReport[] }
  t.equal(report.ok, false)
  const findings = report.groups.find((g) => g.group === 'g1')?.findings ?? []
  t.same(findings.filter((f) => f.kind === 'foreign'), [{ kind: 'foreign', group: 'g1', node: replica, role: 'replica', count: 1, sample: [foreignKey] }], `the foreign row ${foreignKey} on the replica`)
  const near = findings.flatMap((f) => f.kind === 'mismatch' && f.node === replica && f.near !== undefined ? [f.near] : [])
  t.ok(near.includes(changed) && near.includes(renamed), `the differences are named: ${changed} (another version) and ${renamed} (missing) among ${JSON.stringify(near)}`)
  t.ok(findings.every((f) => f.node === replica), 'all of them on the replica')
  t.ok(report.groups.filter((g) => g.group !== 'g1').every((g) => g.findings.length === 0), 'the other groups are fine')
  const human = await shardkv(['check', ...conn, '--group', 'g1'])
  t.equal(human.code, 3)
  t.match(human.stdout, /^g1: INCONSISTENT: /m)
  t.match(human.stdout, new RegExp(`^ {2}${replica} \\(replica\\) holds 1 row its map gives to another group`, 'm'))
  t.match(human.stdout, new RegExp(`^ {2}${replica} \\(replica\\) differs from the primary at "${changed}" or just before it`, 'm'))
  t.match(human.stdout, /^check: INCONSISTENT: 1 group, \d+ rows, epoch \d+, \d+ findings$/m)
})
