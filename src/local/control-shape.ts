import { join } from 'node:path'
import { readJson, writeJsonAtomic } from '../membership/json-file'

/**
 * The control plane of a local cluster (`npm start`): with the file registry (the
 * default) one coordinator keeps the map in <data-dir>/coordinator and one router
 * follows it; with `--registry etcd` the map lives in etcd, several coordinators
 * campaign for its leader key and several routers follow it there. An etcd cluster is
 * kept in <data-dir>/control-plane.json, as the nodes are in nodes.json: the etcd
 * members' names and ports (their peer URLs are baked into the etcd cluster, so they
 * must never move) or the --etcd endpoints, the cluster's name in etcd and the number of
 * coordinators and routers. A later `npm start` without flags runs the same shape.
 * `decideShape` is the whole policy, a pure function (test/unit/control-shape.test.ts).
 */

export const CONTROL_FILE = 'control-plane.json'

/** One etcd member the launcher runs, under <data-dir>/etcd/<name>. */
export interface LocalEtcdMember {
  name: string
  clientPort: number
  peerPort: number
}

export interface EtcdShape {
  registry: 'etcd'
  /** The cluster's name in etcd (keys under /shardkv/<cluster>/). */
  cluster: string
  /** Client URLs of an etcd run elsewhere (--etcd); absent: the launcher runs `members`. */
  endpoints?: string[]
  members?: LocalEtcdMember[]
  coordinators: number
  routers: number
}

/** What the command line says about the control plane (undefined: not given). */
export interface ShapeFlags {
  registry?: 'file' | 'etcd'
  /** --etcd, as http://host:port client URLs. */
  etcd?: string[]
  coordinators?: number
  routers?: number
}

export class ShapeError extends Error {}

/** The etcd members a launcher runs itself: three, on router port + 100..105. */
export const LOCAL_ETCD_MEMBERS = 3
export const ETCD_PORT_OFFSET = 100
export const DEFAULT_COORDINATORS = 2
export const DEFAULT_ROUTERS = 1
/** Coordinator i listens on router port + 10 + i, router j on router port + j: both stay below + 10. */
export const MAX_CONTROL_PROCESSES = 10

export function localEtcdMembers (routerPort: number): LocalEtcdMember[] {
  return Array.from({ length: LOCAL_ETCD_MEMBERS }, (_, i) => ({
    name: `e${i}`,
    clientPort: routerPort + ETCD_PORT_OFFSET + 2 * i,
    peerPort: routerPort + ETCD_PORT_OFFSET + 2 * i + 1
  }))
}

/**
 * The shape to run (undefined: the file registry, as before etcd existed) and lines to
 * tell the operator, from the flags and what the data dir holds: `recorded` (its
 * control-plane.json) and whether it holds a file-registry map. Throws ShapeError, one
 * line, when the flags contradict the data dir.
 */
export function decideShape (flags: ShapeFlags, recorded: EtcdShape | undefined, dir: { fileMap: boolean, routerPort: number }): { shape: EtcdShape | undefined, notices: string[] } {
  const wantsEtcd = flags.registry === 'etcd' || (flags.registry === undefined && flags.etcd !== undefined)
  if (flags.registry === 'file' && flags.etcd !== undefined) throw new ShapeError('--etcd needs --registry etcd')
  if (recorded === undefined) {
    if (!wantsEtcd) {
      if (flags.coordinators !== undefined || flags.routers !== undefined) throw new ShapeError('--coordinators and --routers need --registry etcd (the file registry runs one coordinator and one router)')
      return { shape: undefined, notices: [] }
    }
    if (dir.fileMap) throw new ShapeError('this data dir holds a cluster whose map is in coordinator/cluster.json (the file registry); start the etcd cluster in another --data-dir')
    const where = flags.etcd !== undefined ? { endpoints: flags.etcd } : { members: localEtcdMembers(dir.routerPort) }
    return { shape: { registry: 'etcd', cluster: 'local', ...where, coordinators: flags.coordinators ?? DEFAULT_COORDINATORS, routers: flags.routers ?? DEFAULT_ROUTERS }, notices: [] }
  }
  if (flags.registry === 'file') throw new ShapeError(`this data dir holds a cluster whose map is in etcd (${CONTROL_FILE}); drop --registry file, or use another --data-dir`)
  if (flags.etcd !== undefined && flags.etcd.join(',') !== (recorded.endpoints ?? []).join(',')) {
    const was = recorded.endpoints === undefined ? 'the etcd members this launcher runs' : recorded.endpoints.join(',')
    throw new ShapeError(`this cluster's map is in ${was} (${CONTROL_FILE}); --etcd ${flags.etcd.join(',')} would start with an empty one: drop --etcd, or use another --data-dir`)
  }
  const shape = { ...recorded, coordinators: flags.coordinators ?? recorded.coordinators, routers: flags.routers ?? recorded.routers }
  const notices = [
    ...(shape.coordinators !== recorded.coordinators ? [`${shape.coordinators} coordinators now (were ${recorded.coordinators}); kept in ${CONTROL_FILE}`] : []),
    ...(shape.routers !== recorded.routers ? [`${shape.routers} routers now (were ${recorded.routers}); kept in ${CONTROL_FILE}`] : [])
  ]
  return { shape, notices }
}

function isShape (v: unknown): v is EtcdShape {
  const s = v as Partial<EtcdShape>
  const count = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= MAX_CONTROL_PROCESSES
  const member = (m: Partial<LocalEtcdMember>): boolean => typeof m.name === 'string' && Number.isInteger(m.clientPort) && Number.isInteger(m.peerPort)
  return typeof s === 'object' && s !== null && s.registry === 'etcd' && typeof s.cluster === 'string' && count(s.coordinators) && count(s.routers) &&
    ((Array.isArray(s.endpoints) && s.endpoints.every((e) => typeof e === 'string')) !== (Array.isArray(s.members) && s.members.every(member)))
}

/** The data dir's control-plane.json, or undefined without one. Throws on a malformed file. */
export function readShape (dataDir: string): EtcdShape | undefined {
  const path = join(dataDir, CONTROL_FILE)
  const raw = readJson(path)
  if (raw === undefined) return undefined
  if (!isShape(raw)) throw new ShapeError(`${path} is not a control plane file ({"registry": "etcd", "cluster", "coordinators", "routers", and "members" or "endpoints"})`)
  return raw
}

export function writeShape (dataDir: string, shape: EtcdShape): void {
  writeJsonAtomic(join(dataDir, CONTROL_FILE), shape)
}

/** `--etcd URL[,URL...]`: client URLs (http://host:port; a bare host:port means http). */
export function parseEtcdFlag (text: string): string[] {
  return text.split(',').map((part) => {
    const raw = part.trim()
    let url: URL
    try {
      url = new URL(raw.includes('://') ? raw : `http://${raw}`)
    } catch {
      throw new ShapeError(`--etcd: ${JSON.stringify(raw)} is not a URL (http://host:port)`)
    }
    if (url.protocol !== 'http:' || url.port === '' || url.pathname !== '/') throw new ShapeError(`--etcd: ${JSON.stringify(raw)} is not http://host:port (etcd's client URL, plain HTTP)`)
    return `http://${url.host}`
  })
}
