import { join, resolve } from 'node:path'
import { entryByUrl, readLauncherState, processAlive, readNodes, readNodesFile, updateNodes, type NodeEntry } from '../src/local/nodes-file'
import { health } from './shard-process'
import { existingTls } from '../src/local/certificates'
import { readFileSync } from 'node:fs'

/**
 * The scripts' side of a local cluster run by `npm start`: when a launcher runs in the
 * cluster dir for the router the script talks to, a node is not started detached by the
 * script but requested from the launcher through its nodes file (src/local/nodes-file.ts):
 * the launcher starts it, supervises it, stops it on Ctrl-C and starts it again on the
 * next `npm start`. Removing the entry is how a node is stopped for good.
 */

export interface LocalLauncher {
  dataDir: string
  routerUrl: string
  pid: number
  /** The local CA (npm start -- --tls): its nodes serve https and are verified by it. */
  ca?: string
}

function sameUrl (a: string, b: string): boolean {
  try {
    const x = new URL(a)
    const y = new URL(b)
    const host = (h: string): string => h === 'localhost' ? '127.0.0.1' : h
    return host(x.hostname) === host(y.hostname) && x.port === y.port
  } catch {
    return false
  }
}

/** The launcher running the local cluster in `clusterDir` with the router at `routerUrl`, if any. */
export function findLocalLauncher (clusterDir: string, routerUrl: string): LocalLauncher | undefined {
  const dataDir = resolve(clusterDir)
  const state = readLauncherState(dataDir)
  if (state === undefined || !processAlive(state.pid) || !sameUrl(state.routerUrl, routerUrl)) return undefined
  const tls = existingTls(dataDir)
  return { dataDir, routerUrl: state.routerUrl, pid: state.pid, ...(tls === undefined ? {} : { ca: readFileSync(tls.ca, 'utf8') }) }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** Asks the launcher to run `entry` and waits until the node is healthy. On failure the request is withdrawn. */
export async function startManagedNode (l: LocalLauncher, entry: NodeEntry, timeoutMs = 60_000): Promise<{ url: string, pid: number }> {
  const url = `${l.ca === undefined ? 'http' : 'https'}://127.0.0.1:${entry.port}`
  const file = readNodesFile(l.dataDir)
  const nodes = file?.nodes ?? []
  if (nodes.some((n) => n.name === entry.name)) throw new Error(`the local cluster already has a node named ${entry.name} (${join(l.dataDir, 'nodes.json')})`)
  const taken = new Set([...nodes.flatMap((n) => [n.port, n.peerPort]), file?.router?.peerPort].filter((p) => p !== undefined))
  for (const port of [entry.port, entry.peerPort]) {
    if (port !== undefined && taken.has(port)) throw new Error(`the local cluster already has a node on port ${port}`)
  }
  updateNodes(l.dataDir, (all) => [...all, entry])
  const withdraw = (): void => { updateNodes(l.dataDir, (all) => all.filter((n) => n.name !== entry.name)) }
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!processAlive(l.pid)) {
      withdraw()
      throw new Error(`the local cluster's launcher (pid ${l.pid}) is gone`)
    }
    const s = readLauncherState(l.dataDir)?.nodes[entry.name]
    if (s?.state === 'gave-up') {
      withdraw()
      throw new Error(`the launcher could not start ${entry.name}; see ${join(l.dataDir, 'logs', `${entry.name}.log`)} and the npm start output`)
    }
    if (s?.state === 'running' && s.pid !== null) {
      const h = await health(url, l.ca)
      if (h?.status === 'ok' && h.pid === s.pid) return { url, pid: s.pid }
    }
    await sleep(200)
  }
  withdraw()
  throw new Error(`${entry.name} did not become healthy on ${url} within ${timeoutMs} ms; see ${join(l.dataDir, 'logs', `${entry.name}.log`)}`)
}

/**
 * Asks the launcher to stop the node at `url` for good (drops it from the nodes file)
 * and waits until it is stopped. Undefined when the local cluster has no such node.
 */
export async function releaseManagedNode (l: LocalLauncher, url: string, timeoutMs = 30_000): Promise<{ name: string, stopped: boolean } | undefined> {
  const entry = entryByUrl(readNodes(l.dataDir) ?? [], url)
  if (entry === undefined) return undefined
  updateNodes(l.dataDir, (all) => all.filter((n) => n.name !== entry.name))
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!processAlive(l.pid)) return { name: entry.name, stopped: false }
    if (readLauncherState(l.dataDir)?.nodes[entry.name] === undefined) return { name: entry.name, stopped: true }
    await sleep(200)
  }
  return { name: entry.name, stopped: false }
}

/** Said when a script starts a node itself: it will not belong to any `npm start`. */
export function detachedNotice (clusterDir: string): string {
  return `no npm start launcher runs in ${clusterDir} for this router: starting the node detached (it outlives npm start's Ctrl-C; pass --cluster-dir to hand it to a local cluster)\n`
}
