import { spawn, spawnSync } from 'node:child_process'
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import { request } from 'undici'
import { HEALTH_PATH } from '../src/protocol/wire'
import { nginxConfig } from './nginx-config'

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

/** Debian keeps nginx in /usr/sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']

export function findNginx (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), ...EXTRA_DIRS]
  for (const dir of dirs) {
    const candidate = join(dir, 'nginx')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch { /* not here */ }
  }
  return undefined
}

/**
 * The nginx binary, installing the Debian package first when it is missing and we may;
 * otherwise a one-line reason to skip. The install's output goes to `logFile`.
 */
export function ensureNginx (logFile: string): { path: string } | { skip: string } {
  const found = findNginx()
  if (found !== undefined) return { path: found }
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    return { skip: 'nginx is not installed and we are not root to apt-get install it (apt-get install -y nginx)' }
  }
  console.log('  nginx not found: apt-get install -y nginx ...')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args: string[]): number => {
    const r = spawnSync('apt-get', args, { env, encoding: 'utf8', timeout: 300_000 })
    writeFileSync(logFile, `$ apt-get ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}\n`, { flag: 'a' })
    return r.status ?? 1
  }
  // Stale package lists are the usual reason an install fails in a fresh container.
  if (run(['install', '-y', 'nginx']) !== 0 && (run(['update']) !== 0 || run(['install', '-y', 'nginx']) !== 0)) {
    return { skip: `apt-get install -y nginx failed (see ${logFile})` }
  }
  const installed = findNginx()
  return installed === undefined ? { skip: 'nginx still not found after installing it' } : { path: installed }
}

export function freePort (host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ host, port: 0, exclusive: true }, () => {
      const addr = server.address()
      server.close(() => typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')))
    })
  })
}

function tail (file: string, lines = 10): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

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
  const listenPort = await freePort(opts.host)
  const configFile = join(opts.prefix, 'nginx.conf')
  const errorLog = join(opts.prefix, 'error.log')
  writeFileSync(configFile, nginxConfig({
    prefix: opts.prefix,
    host: opts.host,
    listenPort,
    upstreams: opts.upstreams.map((u) => new URL(u).host)
  }))
  // -e: nginx opens its error log before reading the config; keep that one in the prefix too.
  const child = spawn(opts.binary, ['-p', opts.prefix, '-c', configFile, '-e', errorLog], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // Own process group: the workers go with the master when we SIGKILL the group.
    detached: true
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
  let exitedCode: number | null | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code) => { exitedCode = code; resolve() })
    child.once('error', (err) => { stderr += err.message; exitedCode = -1; resolve() })
  })
  const pid = child.pid ?? -1
  const hardKill = (): void => {
    for (const target of [-pid, pid]) {
      try { process.kill(target, 'SIGKILL') } catch { /* gone */ }
    }
  }
  // If the bench dies with nginx running, nginx goes too.
  const onExit = (): void => { if (exitedCode === undefined && pid > 0) hardKill() }
  process.on('exit', onExit)
  void exited.then(() => process.off('exit', onExit))

  let stopping: Promise<void> | undefined
  const stop = (timeoutMs = 5000): Promise<void> => {
    stopping ??= (async () => {
      if (exitedCode !== undefined || pid <= 0) return
      try { process.kill(pid, 'SIGTERM') } catch { /* gone */ }
      const timer = setTimeout(hardKill, timeoutMs)
      await exited
      clearTimeout(timer)
      // A worker orphaned by a killed master would keep the port: take the group.
      try { process.kill(-pid, 'SIGKILL') } catch { /* none left */ }
    })()
    return stopping
  }

  const url = `http://${opts.host}:${listenPort}`
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000)
  for (;;) {
    if (exitedCode !== undefined) {
      throw new Error(`nginx exited (code ${exitedCode}) before serving: ${(stderr.trim() + '\n' + tail(errorLog)).trim()}`)
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
