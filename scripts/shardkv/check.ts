import type { Command } from 'commander'
import { ADMIN_DIGEST_PATH, DIGEST_MAX_ROWS, DIGEST_PAGE_ROWS, type WireGroupDigest } from '../../src/protocol/digest'
import type { ClusterView, GroupView } from '../../src/protocol/cluster-view'
import { comparePage, describeFinding, differs, isInconsistency, mergeFindings, type Finding } from './check-compare'
import { intOption, withCommonOptions, withConnection, type CommonOptions, type Connection } from './common'
import { EXIT } from '../cli'

/**
 * `shardkv check`, like `redis-cli --cluster check`: pages through every group's rows in
 * key order (POST /admin/check/digest, router/check.ts) and reports replicas whose rows
 * differ from their primary's, and rows a node holds that the map gives to another group.
 * A page that differs is read again a few times first (a replica may be a moment behind),
 * then narrowed to the first differing key. The map must not change meanwhile.
 */

interface CheckOptions extends CommonOptions { group?: string, pageRows: number }

export interface GroupReport {
  group: string
  nodes: number
  rows: number
  tombstones: number
  pages: number
  findings: Finding[]
}

const RETRIES = 4
/** Differing keys named per replica; past them, a differing page is reported by its range only. */
const MAX_NAMED = 10
const RETRY_MS = 500
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function readPage (c: Connection, group: string, after: string, limit: number, epoch: number): Promise<WireGroupDigest> {
  const page = await c.post<WireGroupDigest>(ADMIN_DIGEST_PATH, { group, after, limit })
  if (page.epoch !== epoch) throw new Error(`the cluster map changed during the check (epoch ${epoch} -> ${page.epoch}); run it again`)
  return page
}

/**
 * The shortest prefix of the page (by rows) on which the replica differs: the primary's
 * last key of that prefix is where the first difference is (or just after it).
 */
async function narrow (c: Connection, group: string, after: string, limit: number, epoch: number, node: string): Promise<WireGroupDigest | undefined> {
  let lo = 1
  let hi = limit
  let found: WireGroupDigest | undefined
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2)
    const page = await readPage(c, group, after, mid, epoch)
    const [primary] = page.nodes
    const replica = page.nodes.find((n) => n.url === node)
    if (primary === undefined || replica === undefined) return found
    if (differs(primary, replica)) {
      found = page
      hi = mid - 1
    } else {
      lo = mid + 1
    }
  }
  return found
}

const primaryRows = (page: WireGroupDigest): number => page.nodes[0]?.page?.rows ?? 0

/** A page, read again while some replica differs (it may be a moment behind), up to RETRIES times. */
async function settledPage (c: Connection, group: string, after: string, opts: { limit: number, epoch: number }, outOfSync: ReadonlyMap<string, number | null>): Promise<{ page: WireGroupDigest, findings: Finding[] }> {
  let page = await readPage(c, group, after, opts.limit, opts.epoch)
  let findings = comparePage(page, outOfSync)
  for (let attempt = 1; attempt < RETRIES && findings.some((f) => f.kind !== 'foreign'); attempt++) {
    await sleep(RETRY_MS)
    page = await readPage(c, group, after, opts.limit, opts.epoch)
    findings = comparePage(page, outOfSync)
  }
  return { page, findings }
}

async function checkGroup (c: Connection, g: GroupView, opts: { limit: number, epoch: number }): Promise<GroupReport> {
  const group = g.id
  const outOfSync = new Map(g.nodes.filter((n) => n.role === 'replica' && n.inSync !== true).map((n) => [n.url, n.lag]))
  const report: GroupReport = { group, nodes: g.nodes.length, rows: 0, tombstones: 0, pages: 0, findings: [] }
  const named = new Map<string, number>()
  let after = ''
  for (;;) {
    let { page, findings } = await settledPage(c, group, after, opts, outOfSync)
    // Cut the page at the earliest difference a replica shows, and go on after it: every
    // difference gets its key (up to MAX_NAMED per replica), not only a page's first.
    const toName = findings.filter((f) => f.kind === 'mismatch' && (named.get(f.node) ?? 0) < MAX_NAMED)
    let cut: WireGroupDigest | undefined
    for (const f of toName) {
      const prefix = await narrow(c, group, after, opts.limit, opts.epoch, f.node)
      if (prefix !== undefined && (cut === undefined || primaryRows(prefix) < primaryRows(cut))) cut = prefix
    }
    if (cut !== undefined) {
      page = cut
      findings = comparePage(cut, outOfSync)
      for (const f of findings) {
        if (f.kind !== 'mismatch') continue
        const last = cut.nodes[0]?.page?.last
        if (last !== undefined && last !== '') f.near = last
        named.set(f.node, (named.get(f.node) ?? 0) + 1)
      }
    }
    report.findings.push(...findings)
    report.pages++
    report.rows += primaryRows(page)
    report.tombstones += page.nodes[0]?.page?.tombstones ?? 0
    if (page.done || page.until === null) break
    after = page.until
  }
  report.findings = mergeFindings(report.findings)
  return report
}

/** The exit code of a finished check: 3 when anything is inconsistent, 1 when some node could not be checked, else 0. */
export function checkExitCode (reports: readonly GroupReport[]): number {
  const findings = reports.flatMap((r) => r.findings)
  if (findings.some(isInconsistency)) return EXIT.inconsistent
  return findings.length > 0 ? EXIT.failure : EXIT.ok
}

export function renderCheck (reports: readonly GroupReport[], epoch: number): string {
  const lines: string[] = []
  for (const r of reports) {
    const counts = `${r.nodes} node${r.nodes === 1 ? '' : 's'}, ${r.rows} rows (${r.tombstones} tombstones) in ${r.pages} page${r.pages === 1 ? '' : 's'}`
    if (r.findings.length === 0) {
      lines.push(`${r.group}: ok: ${counts}; ${r.nodes > 1 ? 'every replica equals the primary' : 'no replicas'}; no foreign rows`)
      continue
    }
    lines.push(`${r.group}: ${r.findings.some(isInconsistency) ? 'INCONSISTENT' : 'NOT CHECKED'}: ${counts}`)
    for (const f of r.findings) lines.push(`  ${describeFinding(f)}`)
  }
  const code = checkExitCode(reports)
  const rows = reports.reduce((n, r) => n + r.rows, 0)
  const verdict = code === EXIT.ok ? 'OK' : code === EXIT.inconsistent ? 'INCONSISTENT' : 'INCOMPLETE'
  const problems = reports.flatMap((r) => r.findings).length
  lines.push(`check: ${verdict}: ${reports.length} group${reports.length === 1 ? '' : 's'}, ${rows} rows, epoch ${epoch}${problems > 0 ? `, ${problems} finding${problems === 1 ? '' : 's'}` : ''}`)
  return lines.join('\n') + '\n'
}

/** Why the cluster cannot be checked now (a rebalance moves rows), or undefined. */
export function unsettled (view: ClusterView): string | undefined {
  const r = view.rebalance
  if (r !== undefined && r !== null && r.phase !== 'done') return `a rebalance (${r.id}) is running (${r.phase}); wait for it (shardkv watch), then check`
  if (view.handover !== undefined) return 'a rebalance has not settled (the map has a handover); wait for it (shardkv watch), then check'
  return undefined
}

async function runCheck (options: CheckOptions): Promise<number> {
  return await withConnection(options, async (c) => {
    const view = await c.admin.cluster()
    const why = unsettled(view)
    if (why !== undefined) throw new Error(why)
    const groups = view.groups.filter((g) => options.group === undefined || g.id === options.group)
    if (groups.length === 0) throw new Error(`group ${options.group ?? ''} does not exist (groups: ${view.groups.map((g) => g.id).join(', ')})`)
    const reports: GroupReport[] = []
    for (const g of groups) reports.push(await checkGroup(c, g, { limit: options.pageRows, epoch: view.epoch }))
    process.stdout.write(options.json ? JSON.stringify({ ok: checkExitCode(reports) === EXIT.ok, epoch: view.epoch, groups: reports }) + '\n' : renderCheck(reports, view.epoch))
    return checkExitCode(reports)
  })
}

export function registerCheck (program: Command, done: (code: number) => void): void {
  withCommonOptions(program.command('check'))
    .description('check every group: replicas hold exactly the primary\'s rows, and no node holds rows of another group (exit 3 if not)')
    .option('--group <id>', 'check only this group')
    .option('--page-rows <n>', `rows per page read from a node (1-${DIGEST_MAX_ROWS})`, intOption(1, DIGEST_MAX_ROWS), DIGEST_PAGE_ROWS)
    .action(async (options: CheckOptions) => { done(await runCheck(options)) })
}
