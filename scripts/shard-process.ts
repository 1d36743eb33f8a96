import type { ShardHealth } from '../src/protocol/node-answers'
import { spawn } from 'node:child_process'
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Agent, request } from '../src/http/undici'
import { credentialArgs, entryPoint, type LaunchCredentials } from '../src/local/launcher'
import { HEALTH_PATH } from '../src/protocol/wire'
import { peerPortFor, writeNodeLaunch } from '../src/local/nodes-file'
import { anyFreePort, isPortFree } from '../src/local/ports'

/**
 * Shard nodes that the operator scripts start must outlive the script: they run
 * detached, in their own session, with output going straight to a log file (a pipe
 * would break, and the node with it, when the script exits).
 */

export interface DetachedShard {
  url: string
  pid: number
  logFile: string
}

/** A peer port for a node on `dataPort`: data port + 10000 as `npm start` gives them when free, else any free port. */
export async function freePeerPort (host: string, dataPort: number): Promise<number> {
  const usual = peerPortFor(dataPort)
  if (usual !== undefined && await isPortFree(host, usual)) return usual
  for (;;) {
    const port = await anyFreePort(host)
    if (port !== dataPort) return port
  }
}


/** A node's /healthz, or undefined when it does not answer; `ca`: the PEM an https node is verified by. */
export async function health (url: string, ca?: string): Promise<ShardHealth | undefined> {
  const dispatcher = ca === undefined ? undefined : new Agent({ connect: { ca } })
  try {
    const res = await request(url + HEALTH_PATH, { headersTimeout: 2000, bodyTimeout: 2000, dispatcher })
    const body = await res.body.json() as ShardHealth
    return res.statusCode === 200 ? body : undefined
  } catch {
    return undefined
  } finally {
    await dispatcher?.close()
  }
}

export interface DetachedShardOptions {
  host: string
  /** 0: a free one. */
  port: number
  dataDir: string
  workers?: number | undefined
  logFile: string
  timeoutMs?: number
  /** The cluster's credentials files (scripts/auth.ts nodeCredentials); absent: none. */
  credentials?: LaunchCredentials | undefined
}

function shardArgs (opts: DetachedShardOptions, port: number, peerPort: number): string[] {
  const args = [entryPoint('shards'), '--host', opts.host, '--port', String(port), '--peer-port', String(peerPort), '--data-dir', opts.dataDir]
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers))
  args.push(...credentialArgs(opts.credentials))
  return args
}

export async function startDetachedShard (opts: DetachedShardOptions): Promise<DetachedShard> {
  const port = opts.port === 0 ? await anyFreePort(opts.host) : opts.port
  const ca = opts.credentials?.tlsCaFile === undefined ? undefined : readFileSync(opts.credentials.tlsCaFile, 'utf8')
  const url = `${ca === undefined ? 'http' : 'https'}://${opts.host}:${port}`
  if (await health(url, ca) !== undefined) throw new Error(`something already answers on ${url}`)
  mkdirSync(dirname(resolve(opts.logFile)), { recursive: true })
  const peerPort = await freePeerPort(opts.host, port)
  const fd = openSync(opts.logFile, 'a')
  const child = spawn(process.execPath, shardArgs(opts, port, peerPort), { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  const pid = child.pid
  if (pid === undefined) throw new Error('the shard node did not start')
  let exited: number | null | undefined
  child.once('exit', (code) => { exited = code })
  child.unref()
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  while (Date.now() < deadline) {
    if (exited !== undefined) throw new Error(`the shard node exited with code ${String(exited)}; see ${opts.logFile}`)
    const h = await health(url, ca)
    if (h?.status === 'ok' && h.pid === pid) {
      try {
        writeNodeLaunch(resolve(opts.dataDir), { host: opts.host, port, workers: opts.workers, peerPort, ...opts.credentials })
      } catch { /* restart-node then needs --port */ }
      return { url, pid, logFile: opts.logFile }
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  try { process.kill(pid, 'SIGTERM') } catch {}
  throw new Error(`the shard node did not become healthy on ${url} in time; see ${opts.logFile}`)
}

/** SIGTERM a node we know by its reported pid, and wait for it to be gone. */
export async function stopNode (pid: number, timeoutMs = 15_000): Promise<boolean> {
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return false
  }
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0)
    } catch {
      return true
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}
