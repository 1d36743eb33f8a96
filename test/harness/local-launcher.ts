import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { isPortFree } from '../../src/local/ports'
import { PEER_PORT_OFFSET } from '../../src/local/nodes-file'
import { PORT_BLOCK_SIZE, reservePortBlock } from './port-block'
import { credentialPaths } from '../../src/local/credentials'
import { HttpClient } from './http'
import { isAlive, sleep, waitUntilDead } from './cluster'
import { describeView } from './cluster-view'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * `npm start` (dist/scripts/start-local.js) as an operator runs it, for the self-healing
 * tests: a launcher child in a temp data dir on free fixed ports, its output collected,
 * stopped with SIGINT like Ctrl-C. The teardown (registered before anything starts)
 * SIGINTs every launcher still running, then SIGKILLs any process whose command line
 * names the temp dir (nodes, workers, routers — they all carry their data dir) and
 * removes the dir. Its HTTP client sends the admin token npm start wrote (once it has),
 * as every client of a secured cluster must.
 */

export const ROOT = resolve(__dirname, '..', '..')
const START = join(ROOT, 'dist', 'scripts', 'start-local.js')

export interface Launcher {
  child: ChildProcess
  pid: number
  /** Everything printed so far (stdout and stderr). */
  output: () => string
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>
  /** Waits until the output matches. */
  waitFor: (re: RegExp, timeoutMs: number) => Promise<RegExpMatchArray>
}

export interface LocalSandbox {
  dir: string
  http: HttpClient
  routerPort: number
  basePort: number
  routerUrl: string
  /** npm start's coordinator: its port is the router's + 10. */
  coordinatorUrl: string
  start: (args?: string[]) => Promise<Launcher>
  /** Ctrl-C: SIGINT and wait for the launcher to exit. */
  interrupt: (l: Launcher, timeoutMs?: number) => Promise<number | null>
  /** PIDs of live processes that name the sandbox dir on their command line. */
  processes: () => number[]
  /** The admin token npm start wrote in the sandbox dir, if it has. */
  token: () => string | undefined
}

/**
 * A reserved block (port-block.ts) whose ports base + 100*j + i (i < groups + 4, j <= replicas), the router's
 * (base + 50) and the coordinator's (+10), their peer ports (+10000), and the control plane's of `--registry etcd`
 * (two routers and coordinators above the router port, etcd's members 100 above) are all free.
 */
async function freePorts (groups: number, replicas: number): Promise<{ routerPort: number, basePort: number, release: () => void }> {
  if (100 * replicas + groups + 4 > PORT_BLOCK_SIZE) throw new Error(`a ${groups}x${replicas + 1} cluster does not fit a block of ${PORT_BLOCK_SIZE} ports`)
  const { base, release } = await reservePortBlock(async (basePort) => {
    const routerPort = basePort + 50
    const ports = [routerPort, routerPort + 1, routerPort + 10, routerPort + 11]
    for (let j = 0; j <= replicas; j++) for (let i = 0; i < groups + 4; i++) ports.push(basePort + 100 * j + i)
    ports.push(...ports.map((p) => p + PEER_PORT_OFFSET))
    for (let k = 100; k < 106; k++) ports.push(routerPort + k)
    return (await Promise.all(ports.map(async (p) => await isPortFree('127.0.0.1', p)))).every(Boolean)
  })
  return { routerPort: base + 50, basePort: base, release }
}

/** PIDs of live processes whose command line names `dir` (a detached node and its workers carry their data dir in argv). */
export function processesUsing (dir: string): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) out.push(Number(entry))
    } catch { /* gone */ }
  }
  return out.filter((pid) => pid !== process.pid && isAlive(pid))
}

/** A live process's argv (empty once it is gone). */
export function commandLine (pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
  } catch {
    return []
  }
}

export async function localSandbox (t: Test, name: string, shape: { groups: number, replicas: number }): Promise<LocalSandbox> {
  const dir = mkdtempSync(join(tmpdir(), `shardkv-${name}-`))
  let token: string | undefined
  const readToken = (): string | undefined => {
    try {
      token ??= readFileSync(credentialPaths(dir).adminTokenFile, 'utf8').trim()
    } catch { /* not written (yet, or --insecure) */ }
    return token
  }
  const auth = (): Record<string, string> => {
    const tk = readToken()
    return tk === undefined ? {} : { authorization: `Bearer ${tk}` }
  }
  const http = new HttpClient({ connections: 32, headers: auth })
  const launchers: Launcher[] = []
  let releasePorts = (): void => {}
  t.teardown(async () => {
    for (const l of launchers) if (isAlive(l.pid)) { try { process.kill(l.pid, 'SIGINT') } catch {} }
    await waitUntilDead(launchers.map((l) => l.pid), 20_000).catch(() => undefined)
    const left = processesUsing(dir)
    for (const pid of left) { try { process.kill(pid, 'SIGKILL') } catch {} }
    await waitUntilDead(left, 5000).catch(() => undefined)
    await http.close().catch(() => undefined)
    if (t.passing() === false) for (const l of launchers) t.comment(`launcher ${l.pid} output:\n${l.output().slice(-4000)}`)
    rmSync(dir, { recursive: true, force: true })
    releasePorts()
  })
  const { routerPort, basePort, release } = await freePorts(shape.groups, shape.replicas)
  releasePorts = release
  const start = async (args: string[] = []): Promise<Launcher> => {
    const child = spawn(process.execPath, [START, '--data-dir', dir, '--router-port', String(routerPort), '--base-port', String(basePort),
      '--groups', String(shape.groups), '--replicas', String(shape.replicas), '--workers', '1', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    const waiters = new Set<() => void>()
    const onData = (d: Buffer): void => { text += d.toString(); for (const w of [...waiters]) w() }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { for (const w of [...waiters]) w(); resolve(code) }))
    let done = false
    void exited.then(() => { done = true })
    const waitFor = async (re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => await new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(text)
        if (m !== null) { finish(); resolve(m); return }
        if (done) { finish(); reject(new Error(`the launcher exited before printing ${String(re)}:\n${text.slice(-3000)}`)) }
      }
      const timer = setTimeout(() => { finish(); reject(new Error(`no ${String(re)} within ${timeoutMs} ms:\n${text.slice(-3000)}`)) }, timeoutMs)
      const finish = (): void => { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
    const l: Launcher = { child, pid: child.pid ?? -1, output: () => text, exited, waitFor }
    launchers.push(l)
    return l
  }
  const interrupt = async (l: Launcher, timeoutMs = 30_000): Promise<number | null> => {
    try { process.kill(l.pid, 'SIGINT') } catch {}
    const code = await Promise.race([l.exited, sleep(timeoutMs).then(() => 'timeout' as const)])
    if (code === 'timeout') throw new Error(`the launcher did not exit within ${timeoutMs} ms of SIGINT`)
    return code
  }
  return { dir, http, routerPort, basePort, routerUrl: `http://127.0.0.1:${routerPort}`, coordinatorUrl: `http://127.0.0.1:${routerPort + 10}`, start, interrupt, processes: () => processesUsing(dir), token: readToken }
}

/** Polls the local cluster's GET /cluster until `pred` holds (or throws after timeoutMs, with the last view). */
export async function waitForView (box: LocalSandbox, pred: (v: ClusterView) => boolean, what: string, timeoutMs = 60_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs
  let last: ClusterView | undefined
  while (Date.now() < deadline) {
    try {
      last = await box.http.getJson<ClusterView>(`${box.routerUrl}/cluster`)
      if (pred(last)) return last
    } catch { /* starting */ }
    await sleep(200)
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}; last view: ${last === undefined ? 'none' : describeView(last)}`)
}
