import type { ShardHealth } from '../src/protocol/node-answers'
import { spawn } from 'node:child_process'
import { mkdirSync, openSync, closeSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createServer } from 'node:net'
import { request } from 'undici'
import { entryPoint } from '../src/local/launcher'
import { HEALTH_PATH } from '../src/protocol/wire'
import { writeNodeLaunch } from '../src/local/nodes-file'

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

export async function freePort (host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const address = server.address()
      server.close(() => { typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')) })
    })
  })
}


export async function health (url: string): Promise<ShardHealth | undefined> {
  try {
    const res = await request(url + HEALTH_PATH, { headersTimeout: 2000, bodyTimeout: 2000 })
    const body = await res.body.json() as ShardHealth
    return res.statusCode === 200 ? body : undefined
  } catch {
    return undefined
  }
}

export async function startDetachedShard (opts: { host: string, port: number, dataDir: string, workers?: number, logFile: string, timeoutMs?: number }): Promise<DetachedShard> {
  const port = opts.port === 0 ? await freePort(opts.host) : opts.port
  const url = `http://${opts.host}:${port}`
  if (await health(url) !== undefined) throw new Error(`something already answers on ${url}`)
  mkdirSync(dirname(resolve(opts.logFile)), { recursive: true })
  const fd = openSync(opts.logFile, 'a')
  const args = [entryPoint('shards'), '--host', opts.host, '--port', String(port), '--data-dir', opts.dataDir]
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers))
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  const pid = child.pid
  if (pid === undefined) throw new Error('the shard node did not start')
  let exited: number | null | undefined
  child.once('exit', (code) => { exited = code })
  child.unref()
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  while (Date.now() < deadline) {
    if (exited !== undefined) throw new Error(`the shard node exited with code ${String(exited)}; see ${opts.logFile}`)
    const h = await health(url)
    if (h?.status === 'ok' && h.pid === pid) {
      try { writeNodeLaunch(resolve(opts.dataDir), { host: opts.host, port, workers: opts.workers }) } catch { /* restart-node then needs --port */ }
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
