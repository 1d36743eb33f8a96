import { ShardKvError } from '../protocol/errors'
import { MAX_GROUPS, MAX_RING_VNODES } from '../protocol/limits'
import { ringFor, vnodesFor, RING_DEFAULTS, type GroupRing, type RingMember, type RingParams } from '../ring/ring'

/**
 * The cluster map: which groups exist, their weights and nodes, under an epoch.
 * The coordinator owns it; every change bumps the epoch. Runtime observations
 * (health, pid, replication position) are not part of the map: the coordinator
 * reports them beside it in `GET /cluster`.
 */

/** A group serves its share of the ring while active; a draining one is handing its keys over to leave. */
export type GroupState = 'active' | 'draining'
export type NodeRole = 'primary' | 'replica'

export interface NodeInfo {
  url: string
  role: NodeRole
  /**
   * Replicas only: whether the primary waits for this replica before acknowledging a
   * write. Only the coordinator changes it; only an in-sync replica may be promoted.
   */
  inSync?: boolean
  /**
   * Where the node serves its internal API (`http(s)://host:port`) when that is a peer
   * listener apart from `url`; internal calls go to `peer ?? url`. `url` stays the node's
   * identity (what `self`, shipments and in-sync changes name).
   */
  peer?: string
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
  /**
   * How many times a group joined or left the map (the coordinator counts every transition
   * that changes the set of group ids; absent: 0). It lets a watch cursor tell that groups
   * came and went while it was away even when the map names the same groups again.
   */
  membership?: number
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

export function validateGroupId (id: unknown): asserts id is string {
  if (typeof id !== 'string' || !GROUP_ID.test(id)) throw new MapError(`group id ${shown(id)} must be 1-63 characters of A-Z a-z 0-9 _ - (not starting with _ or -)`)
}

export function normalizeNodeUrl (raw: unknown): string {
  if (typeof raw !== 'string') throw new MapError(`a node url must be a string, not ${shown(raw)}`)
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new MapError(`"${raw}" is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MapError(`node url "${raw}" must use http: or https:`)
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new MapError(`node url "${raw}" must be an origin (http(s)://host:port)`)
  }
  return url.origin
}

/** What a node's /healthz says about its peer listener. */
export interface PeerHealth {
  /** Absent (or not a port) when internal endpoints are on the data port. */
  peerPort?: unknown
  peerTls?: unknown
}

/**
 * The peer origin of a node: its data URL's host with the peer port its /healthz
 * reports (https when the peer listener wants mutual TLS), or the data URL itself
 * when the node has no peer listener. The host is the one the coordinator already
 * reaches the node at, so a node cannot point peers elsewhere by what it reports.
 */
export function peerUrlOf (dataUrl: string, health: PeerHealth): string {
  const port = health.peerPort
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return dataUrl
  const url = new URL(dataUrl)
  url.protocol = health.peerTls === true ? 'https:' : 'http:'
  url.port = String(port)
  return url.origin
}

export function validateWeight (weight: unknown): asserts weight is number {
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0 || weight > 1000) throw new MapError(`weight ${shown(weight)} must be a number in (0, 1000]`)
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
  const map: ClusterMap = {
    epoch: 1,
    ring,
    groups: specs.map((s) => ({
      id: s.id,
      weight: s.weight,
      state: 'active',
      nodes: [{ url: s.url, role: 'primary' }, ...(s.replicas ?? []).map((url) => ({ url, role: 'replica' as const, inSync: false }))]
    }))
  }
  checkMapBounds(map)
  return map
}

/** A value in a refusal's text, without trusting it to convert itself (a map is untrusted input). */
function shown (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Refuses a map past MAX_GROUPS groups or MAX_RING_VNODES virtual nodes (either ring of a
 * handover): every process that installs it builds its ring in memory.
 */
export function checkMapBounds (map: Pick<ClusterMap, 'ring' | 'groups' | 'handover'>): void {
  if (map.groups.length > MAX_GROUPS) throw new MapError(`a map has at most ${MAX_GROUPS} groups, not ${map.groups.length}`)
  for (const members of [map.groups, map.handover?.previous ?? []]) {
    const vnodes = members.reduce((sum, m) => sum + vnodesFor(m.weight, map.ring), 0)
    if (vnodes > MAX_RING_VNODES) {
      throw new MapError(`the ring would have ${vnodes} virtual nodes (weights × vnodesPerWeight ${map.ring.vnodesPerWeight}); at most ${MAX_RING_VNODES} are allowed`)
    }
  }
}

function validateGroup (g: unknown, ids: Set<string>): void {
  if (!isObject(g)) throw new MapError(`a group must be an object, not ${shown(g)}`)
  validateGroupId(g.id)
  if (ids.has(g.id)) throw new MapError(`group "${g.id}" appears twice`)
  ids.add(g.id)
  validateWeight(g.weight)
  if (g.state !== 'active' && g.state !== 'draining') throw new MapError(`group "${g.id}" has unknown state ${shown(g.state)}`)
  if (g.term !== undefined && (!Number.isInteger(g.term) || (g.term as number) < 1)) throw new MapError(`group "${g.id}" term must be an integer >= 1`)
  if (!Array.isArray(g.nodes) || g.nodes.length === 0) throw new MapError(`group "${g.id}" has no nodes`)
  let primaries = 0
  for (const n of g.nodes as unknown[]) {
    if (!isObject(n)) throw new MapError(`group "${g.id}" has a node that is not an object`)
    normalizeNodeUrl(n.url)
    if (n.peer !== undefined && (typeof n.peer !== 'string' || normalizeNodeUrl(n.peer) !== n.peer)) throw new MapError(`group "${g.id}" node ${shown(n.url)} has a peer that is not an origin`)
    if (n.role === 'primary') primaries++
    else if (n.role !== 'replica') throw new MapError(`group "${g.id}" node ${shown(n.url)} has unknown role`)
  }
  if (primaries !== 1) throw new MapError(`group "${g.id}" must have exactly one primary`)
}

/** Checks the shape and size of a map read from disk or the network; throws MapError (400) for anything else. */
export function validateMap (value: unknown): ClusterMap {
  if (!isObject(value)) throw new MapError('the map is not an object')
  const m = value
  if (!Number.isSafeInteger(m.epoch) || (m.epoch as number) < 0) throw new MapError('map.epoch must be a non-negative integer')
  const ring = m.ring
  if (!isObject(ring) || !Number.isSafeInteger(ring.vnodesPerWeight) || (ring.vnodesPerWeight as number) < 1 || ring.algorithm !== 'md5') {
    throw new MapError('map.ring must be { vnodesPerWeight: integer >= 1, algorithm: "md5" }')
  }
  if (!Array.isArray(m.groups)) throw new MapError('map.groups must be an array')
  // Before the per-group checks: a huge array is refused without walking it.
  if (m.groups.length > MAX_GROUPS) throw new MapError(`a map has at most ${MAX_GROUPS} groups, not ${m.groups.length}`)
  const ids = new Set<string>()
  for (const g of m.groups as unknown[]) validateGroup(g, ids)
  if (m.handover !== undefined) {
    const prev = isObject(m.handover) ? m.handover.previous : undefined
    if (!Array.isArray(prev) || prev.length > MAX_GROUPS) throw new MapError(`map.handover.previous must be an array of at most ${MAX_GROUPS} ring members`)
    for (const p of prev as unknown[]) {
      if (!isObject(p)) throw new MapError('a ring member must be an object')
      validateGroupId(p.id)
      validateWeight(p.weight)
    }
  }
  if (m.membership !== undefined && (!Number.isSafeInteger(m.membership) || (m.membership as number) < 0)) throw new MapError('map.membership must be a non-negative integer')
  const map = m as unknown as ClusterMap
  checkMapBounds(map)
  return map
}

/** `next` with its membership count moved on by the groups that joined or left since `before`. */
export function withMembership (before: ClusterMap, next: ClusterMap): ClusterMap {
  const was = new Set(before.groups.map((g) => g.id))
  const is = new Set(next.groups.map((g) => g.id))
  let changes = 0
  for (const id of was) if (!is.has(id)) changes++
  for (const id of is) if (!was.has(id)) changes++
  return changes === 0 ? next : { ...next, membership: (before.membership ?? 0) + changes }
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

/** The map's `peer` for a node whose /healthz says `reported` (peerUrlOf): none when that is the data URL. */
function peerEntry (url: string, reported: string | undefined): string | undefined {
  return reported === undefined || reported === url ? undefined : reported
}

/**
 * `map` at the next epoch with node `url`'s peer set from what it reported, or `map`
 * itself when the map already agrees (or does not list the node): the decision the
 * coordinator makes after every health check.
 */
export function withReportedPeer (map: ClusterMap, url: string, reported: string): ClusterMap {
  const peer = peerEntry(url, reported)
  const listed = map.groups.some((g) => g.nodes.some((n) => n.url === url && n.peer !== peer))
  if (!listed) return map
  return {
    ...map,
    epoch: map.epoch + 1,
    groups: map.groups.map((g) => ({ ...g, nodes: g.nodes.map((n) => n.url !== url ? n : withPeer(n, peer)) }))
  }
}

/** `map` (same epoch) with a peer filled in for every node that has none and whose peer is known. */
export function fillPeers (map: ClusterMap, known: (url: string) => string | undefined): ClusterMap {
  const missing = (n: NodeInfo): string | undefined => n.peer === undefined ? peerEntry(n.url, known(n.url)) : undefined
  if (!map.groups.some((g) => g.nodes.some((n) => missing(n) !== undefined))) return map
  return { ...map, groups: map.groups.map((g) => ({ ...g, nodes: g.nodes.map((n) => missing(n) === undefined ? n : withPeer(n, missing(n))) })) }
}

function withPeer (node: NodeInfo, peer: string | undefined): NodeInfo {
  const { peer: _old, ...rest } = node
  return peer === undefined ? rest : { ...rest, peer }
}
