import { join } from 'node:path'
import { readJson, writeJsonAtomic } from '../membership/json-file'

/**
 * What a local cluster (`npm start`) runs, kept in its data dir so that it survives the
 * launcher and is shared with the operator scripts:
 *
 * - `nodes.json` — the desired shard nodes (name, group, port, peer port, data dir,
 *   workers) and the router's peer port. The launcher writes it on the first start; add-shard / add-replica add an entry and
 *   remove-shard / remove-replica drop one. The launcher polls it and starts or stops
 *   nodes to match, and the next `npm start` runs exactly these nodes.
 * - `launcher.json` — written by the running launcher: its pid, the router's url and
 *   each node's state, so a script can tell that a launcher owns the cluster and wait
 *   for the node it asked for.
 *
 * A file rather than a control socket: the same file is the persisted desired state
 * (what the next start runs) and the request channel, so there is one source of truth,
 * nothing to keep listening, and a script that runs while the launcher restarts loses
 * nothing. Writes are atomic (temp file + rename).
 */

export interface NodeEntry {
  name: string
  group: string
  /** Fixed, so a restart comes back where the map says the node is. */
  port: number
  /** The peer listener's port (`--peer-port`), fixed for the same reason; absent in files from before peer ports. */
  peerPort?: number
  dataDir: string
  workers?: number
}

export interface NodesFile {
  nodes: NodeEntry[]
  /** The router's peer listener port, kept so that a restart advertises the same one. */
  router?: { peerPort: number }
  /**
   * Every process serves HTTPS and peers use mutual TLS (`npm start -- --tls`, files in
   * <data-dir>/tls). Decided on the first start and kept: the map names https URLs.
   */
  tls?: boolean
}

/**
 * Where a local cluster puts a process's peer listener: its data port + 10000, as Redis
 * puts its cluster bus, so a port says which process it belongs to. Ports that would
 * run past 65535 (nodes the scripts add on free high ports) get a free port instead.
 */
export const PEER_PORT_OFFSET = 10_000

/** The peer port a local cluster gives the process on `port`; undefined past 65535. */
export function peerPortFor (port: number): number | undefined {
  const peer = port + PEER_PORT_OFFSET
  return port > 0 && peer <= 65535 ? peer : undefined
}

export interface LauncherNodeState {
  state: string
  pid: number | null
  url: string
}

export interface LauncherState {
  pid: number
  routerUrl: string
  dataDir: string
  nodes: Record<string, LauncherNodeState>
}

export const NODES_FILE = 'nodes.json'
export const LAUNCHER_FILE = 'launcher.json'

function isEntry (v: unknown): v is NodeEntry {
  const e = v as Partial<NodeEntry>
  return typeof e === 'object' && e !== null && typeof e.name === 'string' && typeof e.group === 'string' &&
    Number.isInteger(e.port) && typeof e.dataDir === 'string' && (e.workers === undefined || Number.isInteger(e.workers)) &&
    (e.peerPort === undefined || Number.isInteger(e.peerPort))
}

/** The whole nodes file, or undefined when it does not exist yet. Throws on a malformed file. */
export function readNodesFile (dataDir: string): NodesFile | undefined {
  const path = join(dataDir, NODES_FILE)
  const raw = readJson(path) as Partial<NodesFile> | undefined
  if (raw === undefined) return undefined
  if (!Array.isArray(raw.nodes) || !raw.nodes.every(isEntry)) throw new Error(`${path} is not a nodes file ({"nodes": [{name, group, port, dataDir}]})`)
  if (raw.router !== undefined && !Number.isInteger(raw.router?.peerPort)) throw new Error(`${path}: "router" must be {"peerPort": <port>}`)
  if (raw.tls !== undefined && typeof raw.tls !== 'boolean') throw new Error(`${path}: "tls" must be true or false`)
  return { nodes: raw.nodes, ...(raw.router === undefined ? {} : { router: raw.router }), ...(raw.tls === true ? { tls: true } : {}) }
}

/** The desired nodes, or undefined when the file does not exist yet. Throws on a malformed file. */
export function readNodes (dataDir: string): NodeEntry[] | undefined {
  return readNodesFile(dataDir)?.nodes
}

export function writeNodesFile (dataDir: string, file: NodesFile): void {
  writeJsonAtomic(join(dataDir, NODES_FILE), file)
}

/** Read, edit the nodes, write (scripts; the launcher only writes the file on a first start). The router entry is kept. */
export function updateNodes (dataDir: string, edit: (nodes: NodeEntry[]) => NodeEntry[]): NodeEntry[] {
  const file = readNodesFile(dataDir)
  const next = edit([...(file?.nodes ?? [])])
  writeNodesFile(dataDir, { ...file, nodes: next })
  return next
}

export function readLauncherState (dataDir: string): LauncherState | undefined {
  try {
    return readJson(join(dataDir, LAUNCHER_FILE)) as LauncherState | undefined
  } catch {
    return undefined
  }
}

/** Whether a process (a launcher named in launcher.json) still runs; EPERM means it does, as another user's. */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function writeLauncherState (dataDir: string, state: LauncherState): void {
  writeJsonAtomic(join(dataDir, LAUNCHER_FILE), state)
}

/**
 * What the launcher must do to run `desired` when `running` (by name) is supervised:
 * start what is new, stop what is gone, restart (stop then start) what changed its
 * port, peer port, data dir or workers.
 */
export function planReconcile (desired: readonly NodeEntry[], running: ReadonlyMap<string, NodeEntry>): { start: NodeEntry[], stop: string[] } {
  const wanted = new Map(desired.map((e) => [e.name, e]))
  const stop: string[] = []
  const start: NodeEntry[] = []
  for (const [name, entry] of running) {
    const w = wanted.get(name)
    if (w === undefined || !sameEntry(w, entry)) stop.push(name)
  }
  for (const e of desired) {
    const r = running.get(e.name)
    if (r === undefined || !sameEntry(r, e)) start.push(e)
  }
  return { start, stop }
}

function sameEntry (a: NodeEntry, b: NodeEntry): boolean {
  return a.group === b.group && a.port === b.port && a.peerPort === b.peerPort && a.dataDir === b.dataDir && a.workers === b.workers
}

/** The entry of the node at `url` (http(s)://host:port), matched by port. */
export function entryByUrl (nodes: readonly NodeEntry[], url: string): NodeEntry | undefined {
  let port: number
  try {
    port = Number(new URL(url).port)
  } catch {
    return undefined
  }
  return nodes.find((n) => n.port === port)
}

/**
 * `<node data dir>/launch.json`: how a shard node was last started (host, port, group,
 * workers, peer port, credentials files), written by whoever starts it, so `npm run restart-node -- --data-dir DIR`
 * can start it again the same way on any machine without a cluster launcher.
 */
export interface NodeLaunch {
  host: string
  port: number
  group?: string
  workers?: number
  synchronous?: string
  peerPort?: number
  clusterSecretFile?: string
  tokensFile?: string
  /** HTTPS and peer mutual TLS (src/local/launcher.ts LaunchCredentials). */
  tlsCertFile?: string
  tlsKeyFile?: string
  tlsCaFile?: string
}

export const NODE_LAUNCH_FILE = 'launch.json'

export function writeNodeLaunch (nodeDataDir: string, launch: NodeLaunch): void {
  writeJsonAtomic(join(nodeDataDir, NODE_LAUNCH_FILE), launch)
}

export function readNodeLaunch (nodeDataDir: string): NodeLaunch | undefined {
  const raw = readJson(join(nodeDataDir, NODE_LAUNCH_FILE)) as Partial<NodeLaunch> | undefined
  if (raw === undefined) return undefined
  if (typeof raw.host !== 'string' || !Number.isInteger(raw.port)) throw new Error(`${join(nodeDataDir, NODE_LAUNCH_FILE)} has no host and port`)
  return raw as NodeLaunch
}
