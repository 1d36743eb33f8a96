import type { Command } from 'commander'
import type { ClusterView, GroupView, NodeView } from '../../src/protocol/cluster-view'
import type { RebalanceProgress } from '../../src/membership/rebalance'
import { renderTable, type Column } from './table'
import { withCommonOptions, withConnection, type CommonOptions } from './common'
import { EXIT } from '../cli'

/**
 * `shardkv status`: every node of every group from the router's `GET /cluster`, one
 * row each, like `etcdctl endpoint status -w table`; `--json` prints the same rows.
 */

/** One node as `status` shows it: its group's fields beside its own. */
export interface StatusRow {
  group: string
  state: GroupView['state']
  weight: number
  node: string
  role: NodeView['role']
  term: number
  position: number | null
  /** Replicas: seqs behind the primary; null for a primary or when unknown. */
  lag: number | null
  /** Replicas: in the set the primary waits for; null for a primary. */
  inSync: boolean | null
  health: NodeView['health']
  epoch: number
  lastError: string | null
}

export function statusRows (view: ClusterView): StatusRow[] {
  return view.groups.flatMap((g) => g.nodes.map((n): StatusRow => ({
    group: g.id,
    state: g.state,
    weight: g.weight,
    node: n.url,
    role: n.role,
    term: g.term,
    position: n.position,
    lag: n.role === 'primary' ? null : n.lag,
    inSync: n.role === 'primary' ? null : n.inSync === true,
    health: n.health,
    epoch: view.epoch,
    lastError: n.lastError
  })))
}

const dash = (v: number | boolean | null): string => v === null ? '-' : String(v)

export const STATUS_COLUMNS: ReadonlyArray<Column<StatusRow>> = [
  { header: 'GROUP', cell: (r) => r.group },
  { header: 'STATE', cell: (r) => r.state },
  { header: 'NODE', cell: (r) => r.node },
  { header: 'ROLE', cell: (r) => r.role },
  { header: 'TERM', cell: (r) => String(r.term), align: 'right' },
  { header: 'POSITION', cell: (r) => dash(r.position), align: 'right' },
  { header: 'LAG', cell: (r) => dash(r.lag), align: 'right' },
  { header: 'IN SYNC', cell: (r) => dash(r.inSync) },
  { header: 'HEALTH', cell: (r) => r.health },
  { header: 'EPOCH', cell: (r) => String(r.epoch), align: 'right' }
]

/** The rebalance in one line: running, last finished, or none. */
export function rebalanceLine (p: RebalanceProgress | null | undefined): string {
  if (p === undefined || p === null) return 'rebalance: none since the router started'
  const what = `${p.id} (${p.kind} ${p.group})`
  if (p.phase === 'done') return `rebalance: ${what} done${p.finishedAt === undefined ? '' : ` at ${p.finishedAt}`}, ${p.copied} rows copied, ${p.deleted} purged`
  return `rebalance: ${what} ${p.phase} ${p.percent}%, ${p.scanned}/${Math.max(p.estimatedRows, p.scanned)} rows scanned${p.lastError === undefined ? '' : `; last error: ${p.lastError}`}`
}

/** The whole human output: a summary line, the table, the rebalance line, and any node errors. */
export function renderStatus (view: ClusterView): string {
  const rows = statusRows(view)
  const summary = `epoch ${view.epoch}, ${view.groups.length} group${view.groups.length === 1 ? '' : 's'}, ${rows.length} node${rows.length === 1 ? '' : 's'}` +
    (view.handover !== undefined ? ', handover not settled' : '')
  const errors = rows.filter((r) => r.health !== 'up' && r.lastError !== null).map((r) => `${r.node}: ${r.lastError ?? ''}`)
  return [summary, renderTable(STATUS_COLUMNS, rows).trimEnd(), rebalanceLine(view.rebalance), ...errors].join('\n') + '\n'
}

export function registerStatus (program: Command, done: (code: number) => void): void {
  withCommonOptions(program.command('status'))
    .description('show every group and node: role, term, position, lag, in-sync, health, epoch (GET /cluster)')
    .action(async (options: CommonOptions) => {
      const view = await withConnection(options, async (c) => await c.admin.cluster())
      process.stdout.write(options.json ? JSON.stringify({ epoch: view.epoch, nodes: statusRows(view), rebalance: view.rebalance ?? null }) + '\n' : renderStatus(view))
      done(EXIT.ok)
    })
}
