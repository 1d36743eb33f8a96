import { ShardKvError } from '../protocol/errors'
import type { RingMember } from '../ring/ring'
import { checkMapBounds, validateGroupId, validateWeight, normalizeNodeUrl, MapError, type ClusterMap, type GroupSpec } from './map'
import { currentMembers } from './ownership'

/**
 * Rebalancing as pure decisions: which maps a rebalance installs, which groups give
 * keys away, and the order of its phases. The coordinator performs the I/O.
 *
 *   fencing   install the handover map (new ring + the previous ring) on every node,
 *             then publish it: moving keys are now written at their new owner only
 *   copying   copy moving rows from each source to their new owner, insert-if-absent
 *   settling  install and publish the settled map (no handover: no fallback reads)
 *   purging   delete from each source the rows it no longer owns
 *   finishing (remove only) install and publish the map without the drained group
 *   done
 * Each phase is idempotent, so a coordinator that restarts resumes the phase it was in.
 */

export type RebalanceKind = 'add' | 'remove'
export type RebalancePhase = 'fencing' | 'copying' | 'settling' | 'purging' | 'finishing' | 'done'

export interface SourceProgress {
  /** seq after which the next scan starts. */
  cursor: number
  done: boolean
  scanned: number
  copied: number
}

export interface PurgeProgress {
  /** key after which the next purge batch starts. */
  cursor: string
  done: boolean
  deleted: number
}

export interface RebalanceState {
  id: string
  kind: RebalanceKind
  group: string
  /** add: the group to add (its primary, weight and replicas). */
  spec?: GroupSpec & { replicas?: string[] }
  phase: RebalancePhase
  /** Epoch of the map the rebalance started from. */
  fromEpoch: number
  /** Ring members before the rebalance (the handover map's `previous`). */
  previous: RingMember[]
  sources: Record<string, SourceProgress>
  purges: Record<string, PurgeProgress>
  /** Rows the sources held when the rebalance began: the denominator of progress. */
  estimatedRows: number
  startedAt: string
  updatedAt: string
  finishedAt?: string
  lastError?: string
}

/** A refused plan, carrying the catalogue code the admin API answers with. */
export class RebalanceError extends ShardKvError {
  declare readonly code: 'group_exists' | 'no_such_group' | 'last_group' | 'rebalance_running' | 'invalid_request'
  constructor (code: RebalanceError['code'], message: string) {
    super(code, message)
    this.name = 'RebalanceError'
  }
}

function sameMembers (a: RingMember[], b: RingMember[]): boolean {
  return a.length === b.length && a.every((m) => b.some((n) => n.id === m.id && n.weight === m.weight))
}

/** Groups that may lose keys going from `previous` to `next`: with a consistent-hash ring,
 *  removing groups moves only their keys, while adding or reweighting can take keys from any. */
export function sourcesOf (previous: RingMember[], next: RingMember[]): string[] {
  const grows = next.some((n) => !previous.some((p) => p.id === n.id && p.weight >= n.weight))
  if (grows) return previous.map((p) => p.id)
  return previous.filter((p) => !next.some((n) => n.id === p.id && n.weight === p.weight)).map((p) => p.id)
}

function freshState (kind: RebalanceKind, group: string, before: ClusterMap, handover: ClusterMap, now: Date, spec?: GroupSpec): RebalanceState {
  const previous = currentMembers(before)
  const sources: Record<string, SourceProgress> = {}
  const purges: Record<string, PurgeProgress> = {}
  for (const id of sourcesOf(previous, currentMembers(handover))) {
    sources[id] = { cursor: 0, done: false, scanned: 0, copied: 0 }
    purges[id] = { cursor: '', done: false, deleted: 0 }
  }
  return {
    id: `${kind}-${group}-${before.epoch}`,
    kind,
    group,
    ...(spec !== undefined ? { spec } : {}),
    phase: 'fencing',
    fromEpoch: before.epoch,
    previous,
    sources,
    purges,
    estimatedRows: 0,
    startedAt: now.toISOString(),
    updatedAt: now.toISOString()
  }
}

function checkSettled (map: ClusterMap): void {
  if (map.handover !== undefined) throw new RebalanceError('rebalance_running', 'a rebalance is still in progress')
}

/** Plans adding a group (one primary node, optionally replicas) to a settled map. */
export function planAdd (map: ClusterMap, spec: GroupSpec & { replicas?: string[] }, now: Date = new Date()): RebalanceState {
  checkSettled(map)
  let urls: string[]
  try {
    validateGroupId(spec.id)
    validateWeight(spec.weight)
    urls = [spec.url, ...(spec.replicas ?? [])].map(normalizeNodeUrl)
  } catch (err) {
    throw new RebalanceError('invalid_request', (err as MapError).message)
  }
  if (map.groups.some((g) => g.id === spec.id)) throw new RebalanceError('group_exists', `group ${spec.id} already exists`)
  for (const url of urls) {
    if (map.groups.some((g) => g.nodes.some((n) => n.url === url))) throw new RebalanceError('group_exists', `node ${url} already serves a group`)
  }
  if (new Set(urls).size !== urls.length) throw new RebalanceError('invalid_request', 'a node is listed twice')
  const full = { ...spec, url: urls[0] as string, replicas: urls.slice(1) }
  const next = applyAdd(map, full)
  checkMapBounds(next)
  const state = freshState('add', spec.id, map, next, now, full)
  if (sameMembers(state.previous, currentMembers(next))) throw new RebalanceError('invalid_request', 'the ring would not change')
  return state
}

/** Plans draining a group out of a settled map. */
export function planRemove (map: ClusterMap, groupId: string, now: Date = new Date()): RebalanceState {
  checkSettled(map)
  const target = map.groups.find((g) => g.id === groupId)
  if (target === undefined) throw new RebalanceError('no_such_group', `group ${groupId} does not exist`)
  if (map.groups.filter((g) => g.state === 'active' && g.id !== groupId).length === 0) {
    throw new RebalanceError('last_group', `group ${groupId} is the last group; its keys would have nowhere to go`)
  }
  return freshState('remove', groupId, map, applyRemove(map, groupId), now)
}

function applyAdd (map: ClusterMap, spec: GroupSpec & { replicas?: string[] }): ClusterMap {
  const nodes = [{ url: spec.url, role: 'primary' as const }, ...(spec.replicas ?? []).map((url) => ({ url, role: 'replica' as const, inSync: false }))]
  return {
    ...map,
    epoch: map.epoch + 1,
    groups: [...map.groups, { id: spec.id, weight: spec.weight, state: 'active', term: 1, nodes }],
    handover: { previous: currentMembers(map) }
  }
}

function applyRemove (map: ClusterMap, groupId: string): ClusterMap {
  return {
    ...map,
    epoch: map.epoch + 1,
    groups: map.groups.map((g) => g.id === groupId ? { ...g, state: 'draining' as const } : g),
    handover: { previous: currentMembers(map) }
  }
}

/**
 * The map a phase installs and publishes, derived from the coordinator's current map
 * (which a failover may have changed since the rebalance began). Returns `current`
 * itself when it already reflects the phase, so a resumed phase re-installs rather
 * than bumping the epoch again; otherwise a new map with the next epoch.
 */
export function phaseMap (state: RebalanceState, current: ClusterMap): ClusterMap {
  switch (state.phase) {
    case 'fencing': {
      if (current.handover !== undefined) return current
      if (state.kind === 'add') {
        if (state.spec === undefined) throw new Error('an add rebalance without its group spec')
        if (current.groups.some((g) => g.id === state.group)) return current
        return applyAdd(current, state.spec)
      }
      const g = current.groups.find((x) => x.id === state.group)
      if (g === undefined || g.state === 'draining') return current
      return applyRemove(current, state.group)
    }
    case 'settling': {
      if (current.handover === undefined) return current
      const { handover: _dropped, ...settled } = current
      return { ...settled, epoch: current.epoch + 1 }
    }
    case 'finishing': {
      if (state.kind !== 'remove' || !current.groups.some((g) => g.id === state.group)) return current
      return { ...current, epoch: current.epoch + 1, groups: current.groups.filter((g) => g.id !== state.group) }
    }
    default:
      return current
  }
}

/** The phase after `phase` for this kind of rebalance. */
export function nextPhase (state: RebalanceState): RebalancePhase {
  switch (state.phase) {
    case 'fencing': return 'copying'
    case 'copying': return 'settling'
    case 'settling': return 'purging'
    case 'purging': return state.kind === 'remove' ? 'finishing' : 'done'
    case 'finishing': return 'done'
    case 'done': return 'done'
  }
}

export interface RebalanceProgress {
  id: string
  kind: RebalanceKind
  group: string
  phase: RebalancePhase
  scanned: number
  copied: number
  deleted: number
  estimatedRows: number
  keysPerSecond: number
  etaSeconds: number | null
  percent: number
  startedAt: string
  finishedAt?: string
  lastError?: string
}

/** What `GET /admin/rebalance` shows: counters, rate and an estimate of the time left. */
export function progressOf (state: RebalanceState, now: Date = new Date()): RebalanceProgress {
  let scanned = 0
  let copied = 0
  let deleted = 0
  for (const s of Object.values(state.sources)) { scanned += s.scanned; copied += s.copied }
  for (const p of Object.values(state.purges)) deleted += p.deleted
  const end = state.finishedAt !== undefined ? new Date(state.finishedAt) : now
  const seconds = Math.max(0.001, (end.getTime() - new Date(state.startedAt).getTime()) / 1000)
  const keysPerSecond = scanned / seconds
  const total = Math.max(state.estimatedRows, scanned)
  const copyDone = state.phase !== 'fencing' && state.phase !== 'copying'
  const percent = state.phase === 'done' ? 100 : copyDone ? 99 : total === 0 ? 0 : Math.min(99, Math.floor(scanned / total * 100))
  const etaSeconds = state.phase === 'done' ? 0 : keysPerSecond > 0 && !copyDone ? Math.ceil((total - scanned) / keysPerSecond) : null
  return {
    id: state.id,
    kind: state.kind,
    group: state.group,
    phase: state.phase,
    scanned,
    copied,
    deleted,
    estimatedRows: state.estimatedRows,
    keysPerSecond: Math.round(keysPerSecond),
    etaSeconds,
    percent,
    startedAt: state.startedAt,
    ...(state.finishedAt !== undefined ? { finishedAt: state.finishedAt } : {}),
    ...(state.lastError !== undefined ? { lastError: state.lastError } : {})
  }
}
