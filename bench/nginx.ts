import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { anyFreePort } from '../src/local/ports'
import { join } from 'node:path'
import { request } from '../src/http/undici'
import { HEALTH_PATH } from '../src/protocol/wire'
import { nginxConfig } from './nginx-config'
import { ensureBinary, findBinary, sleep, startDaemon } from './daemon'

/**
 * nginx as the peer: found on PATH (or installed with apt-get when we are root), run
 * by the bench itself as a non-daemon child with its config, pid file, logs and temp
 * files in the bench's temp dir, and stopped by its pid.
 */

export interface NginxProcess {
  name: 'nginx'
  url: string
  pid: number
  configFile: string
  /** SIGTERM (fast shutdown), SIGKILL of its process group after timeoutMs. Idempotent. */
  stop(timeoutMs?: number): Promise<void>
}

export function findNginx (): string | undefined {
  return findBinary('nginx')
}

/**
 * The nginx binary, installing the Debian package first when it is missing and we may;
 * otherwise a one-line reason to skip. The install's output goes to `logFile`.
 */
export function ensureNginx (logFile: string): { path: string } | { skip: string } {
  return ensureBinary('nginx', 'nginx', logFile)
}

function tail (file: string, lines = 10): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}


export interface StartNginxOptions {
  binary: string
  prefix: string
  host: string
  /** Shard node base urls, e.g. http://127.0.0.1:7001. */
  upstreams: readonly string[]
  readyTimeoutMs?: number
}

export async function startNginx (opts: StartNginxOptions): Promise<NginxProcess> {
  mkdirSync(opts.prefix, { recursive: true })
  const listenPort = await anyFreePort(opts.host)
  const configFile = join(opts.prefix, 'nginx.conf')
  const errorLog = join(opts.prefix, 'error.log')
  writeFileSync(configFile, nginxConfig({
    prefix: opts.prefix,
    host: opts.host,
    listenPort,
    upstreams: opts.upstreams.map((u) => new URL(u).host)
  }))
  // -e: nginx opens its error log before reading the config; keep that one in the prefix too.
  // Its own process group (startDaemon): the workers go with the master.
  const daemon = startDaemon('nginx', opts.binary, ['-p', opts.prefix, '-c', configFile, '-e', errorLog])
  const pid = daemon.pid
  const stop = async (timeoutMs = 5000): Promise<void> => { await daemon.stop(timeoutMs) }

  const url = `http://${opts.host}:${listenPort}`
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000)
  for (;;) {
    if (daemon.exitCode() !== undefined) {
      throw new Error(`nginx exited (code ${String(daemon.exitCode())}) before serving: ${(daemon.output().trim() + '\n' + tail(errorLog)).trim()}`)
    }
    try {
      // Through nginx to the shard node: ready means the whole path works.
      const res = await request(url + HEALTH_PATH, { headersTimeout: 1000, bodyTimeout: 1000 })
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`nginx did not serve ${HEALTH_PATH} within ${opts.readyTimeoutMs ?? 10_000} ms: ${tail(errorLog)}`)
    }
    await sleep(50)
  }
  return { name: 'nginx', url, pid, configFile, stop }
}
