import { spawn, spawnSync } from 'node:child_process'
import { accessSync, constants, writeFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { Stoppable } from './context'

/**
 * The peers' processes (etcd members, redis-server): a Debian package's binary, found on
 * PATH or installed with apt-get when missing and we are root, run by the bench as a
 * child in its own process group with its data in the bench's temp dir, and stopped by
 * its pid (SIGTERM, SIGKILL of the group after a timeout; SIGKILL if the bench exits
 * first).
 */

const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin']

export function findBinary (name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), ...EXTRA_DIRS]
  for (const dir of dirs) {
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch { /* not here */ }
  }
  return undefined
}

/** The binary, installing `pkg` first when it is missing and we may; otherwise a one-line reason to skip. */
export function ensureBinary (binary: string, pkg: string, logFile: string): { path: string } | { skip: string } {
  const found = findBinary(binary)
  if (found !== undefined) return { path: found }
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    return { skip: `${binary} is not installed and we are not root to apt-get install it (apt-get install -y ${pkg})` }
  }
  console.log(`  ${binary} not found: apt-get install -y ${pkg} ...`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args: string[]): number => {
    const r = spawnSync('apt-get', args, { env, encoding: 'utf8', timeout: 300_000 })
    writeFileSync(logFile, `$ apt-get ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}\n`, { flag: 'a' })
    return r.status ?? 1
  }
  if (run(['install', '-y', pkg]) !== 0 && (run(['update']) !== 0 || run(['install', '-y', pkg]) !== 0)) {
    return { skip: `apt-get install -y ${pkg} failed (see ${logFile})` }
  }
  const installed = findBinary(binary)
  return installed === undefined ? { skip: `${binary} still not found after installing ${pkg}` } : { path: installed }
}

export interface Daemon extends Stoppable {
  /** Its last output lines. */
  output(): string
  /** Set once it exited. */
  exitCode(): number | null | undefined
}

export function startDaemon (name: string, binary: string, args: string[]): Daemon {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  const keep = (b: Buffer): void => { out = (out + b.toString('utf8')).slice(-8000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let exited: number | null | undefined
  const done = new Promise<void>((resolve) => {
    child.once('exit', (code) => { exited = code; resolve() })
    child.once('error', (err) => { out += err.message; exited = -1; resolve() })
  })
  const pid = child.pid ?? -1
  const hardKill = (): void => {
    for (const target of [-pid, pid]) {
      try { process.kill(target, 'SIGKILL') } catch { /* gone */ }
    }
  }
  const onExit = (): void => { if (exited === undefined && pid > 0) hardKill() }
  process.on('exit', onExit)
  void done.then(() => process.off('exit', onExit))
  let stopping: Promise<void> | undefined
  return {
    name,
    pid,
    output: () => out,
    exitCode: () => exited,
    stop: (timeoutMs = 5000) => {
      stopping ??= (async () => {
        if (exited !== undefined || pid <= 0) return
        try { process.kill(pid, 'SIGTERM') } catch { /* gone */ }
        const timer = setTimeout(hardKill, timeoutMs)
        await done
        clearTimeout(timer)
        // A child orphaned by a killed leader (nginx's workers) would keep the port: take the group.
        try { process.kill(-pid, 'SIGKILL') } catch { /* none left */ }
      })()
      return stopping
    }
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
