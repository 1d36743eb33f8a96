import { ShardKvError } from '../protocol/errors'
import { ringFor, RING_DEFAULTS, type GroupRing, type RingMember, type RingParams } from '../ring/ring'

/**
 * The cluster map: which groups exist, their weights and nodes, under an epoch.
 * The coordinator owns it; every change bumps the epoch. Runtime observations
 * (health, pid, replication position) are not part of the map: the coordinator
 * reports them beside it in `GET /cluster`.
 */

export type GroupState = 'active' | 'joining' | 'draining'
export type NodeRole = 'primary' | 'replica'

export interface NodeInfo {
  url: string
  role: NodeRole
  /**
   * Replicas only: whether the primary waits for this replica before acknowledging a
   * write. Only the coordinator changes it; only an in-sync replica may be promoted.
   */
  inSync?: boolean
}

export interface GroupInfo {
  id: string
  weight: number
  state: GroupState
  /** Bumped by every failover; a node acting for an older term is fenced. Absent means 1. */
  term?: number
  nodes: NodeInfo[]
}

export interface ClusterMap {
  epoch: number
  ring: RingParams
  groups: GroupInfo[]
  /**
   * Present while a rebalance has not settled: the ring members before it. Keys whose
   * owner differs between the two rings are moving; their old owner still serves
   * fallback reads of them (see ownership.ts).
   */
  handover?: { previous: RingMember[] }
}

export interface GroupSpec {
  id: string
  /** The primary node. */
  url: string
  weight: number
  /** Replica nodes; they start out of sync and join the in-sync set once caught up. */
  replicas?: string[]
}

/** A map or group spec that is not valid; answered as 400 invalid_request wherever it surfaces in a request. */
export class MapError extends ShardKvError {
  constructor (message: string) {
    super('invalid_request', message)
    this.name = 'MapError'
  }
}

const GROUP_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/

export function validateGroupId (id: string): void {
  if (!GROUP_ID.test(id)) throw new MapError(`group id "${id}" must be 1-63 characters of A-Z a-z 0-9 _ - (not starting with _ or -)`)
}

export function normalizeNodeUrl (raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new MapError(`"${raw}" is not a URL`)
  }
  if (url.protocol !== 'http:') throw new MapError(`node url "${raw}" must use http:`)
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw new MapError(`node url "${raw}" must be an origin (http://host:port)`)
  return url.origin
}

export function validateWeight (weight: number): void {
  if (!Number.isFinite(weight) || weight <= 0 || weight > 1000) throw new MapError(`weight ${weight} must be a number in (0, 1000]`)
}

/** Parses `id=primaryUrl[+replicaUrl...][@weight]`, the form of `--group` flags. */
export function parseGroupSpec (text: string): GroupSpec {
  const eq = text.indexOf('=')
  if (eq <= 0) throw new MapError(`group "${text}" must look like id=http://host:port[+http://replica:port...][@weight]`)
  const id = text.slice(0, eq)
  let rest = text.slice(eq + 1)
  let weight = 1
  const at = rest.lastIndexOf('@')
  if (at !== -1) {
    weight = Number(rest.slice(at + 1))
    rest = rest.slice(0, at)
  }
  validateGroupId(id)
  validateWeight(weight)
  const [primary, ...replicas] = rest.split('+')
  const spec: GroupSpec = { id, url: normalizeNodeUrl(primary ?? ''), weight }
  if (replicas.length > 0) spec.replicas = replicas.map(normalizeNodeUrl)
  return spec
}

export function initialMap (specs: readonly GroupSpec[], ring: RingParams = RING_DEFAULTS): ClusterMap {
  const seen = new Set<string>()
  for (const s of specs) {
    if (seen.has(s.id)) throw new MapError(`group "${s.id}" is given twice`)
    seen.add(s.id)
  }
  return {
    epoch: 1,
    ring,
    groups: specs.map((s) => ({
      id: s.id,
      weight: s.weight,
      state: 'active',
      nodes: [{ url: s.url, role: 'primary' }, ...(s.replicas ?? []).map((url) => ({ url, role: 'replica' as const, inSync: false }))]
    }))
  }
}

/** Checks the shape of a map read from disk or the network. */
export function validateMap (value: unknown): ClusterMap {
  const m = value as Partial<ClusterMap> | null
  if (m === null || typeof m !== 'object') throw new MapError('the map is not an object')
  if (!Number.isInteger(m.epoch) || (m.epoch as number) < 0) throw new MapError('map.epoch must be a non-negative integer')
  const ring = m.ring as Partial<RingParams> | undefined
  if (ring === undefined || !Number.isInteger(ring.vnodesPerWeight) || (ring.vnodesPerWeight as number) < 1 || ring.algorithm !== 'md5') {
    throw new MapError('map.ring must be { vnodesPerWeight: integer >= 1, algorithm: "md5" }')
  }
  if (!Array.isArray(m.groups)) throw new MapError('map.groups must be an array')
  const ids = new Set<string>()
  for (const g of m.groups as GroupInfo[]) {
    validateGroupId(g.id)
    if (ids.has(g.id)) throw new MapError(`group "${g.id}" appears twice`)
    ids.add(g.id)
    validateWeight(g.weight)
    if (!['active', 'joining', 'draining'].includes(g.state)) throw new MapError(`group "${g.id}" has unknown state "${String(g.state)}"`)
    if (g.term !== undefined && (!Number.isInteger(g.term) || g.term < 1)) throw new MapError(`group "${g.id}" term must be an integer >= 1`)
    if (!Array.isArray(g.nodes) || g.nodes.length === 0) throw new MapError(`group "${g.id}" has no nodes`)
    let primaries = 0
    for (const n of g.nodes) {
      normalizeNodeUrl(n.url)
      if (n.role === 'primary') primaries++
      else if (n.role !== 'replica') throw new MapError(`group "${g.id}" node ${n.url} has unknown role`)
    }
    if (primaries !== 1) throw new MapError(`group "${g.id}" must have exactly one primary`)
  }
  if (m.handover !== undefined) {
    const prev = (m.handover as { previous?: unknown }).previous
    if (!Array.isArray(prev)) throw new MapError('map.handover.previous must be an array of ring members')
    for (const p of prev as RingMember[]) {
      validateGroupId(p.id)
      validateWeight(p.weight)
    }
  }
  return m as ClusterMap
}

export function termOf (group: GroupInfo): number {
  return group.term ?? 1
}

export function primaryOf (map: ClusterMap, groupId: string): NodeInfo | undefined {
  return map.groups.find((g) => g.id === groupId)?.nodes.find((n) => n.role === 'primary')
}

/** The ring that places keys under this map: its active groups. */
export function ringOf (map: ClusterMap): GroupRing {
  return ringFor(map.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), map.ring)
}
