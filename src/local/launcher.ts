import { existsSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { LaunchError, spawnService, type LaunchedProcess, type ServiceRole, type SpawnSpec } from './child'
import { writeNodeLaunch } from './nodes-file'
import { COORDINATOR_OPTIONS, ROUTER_OPTIONS, splitFlags } from '../config/options'

/**
 * Starts real shardkv processes (shard nodes, coordinators, routers) for scripts, benchmarks and
 * integration tests. Each launch resolves once the process prints its listening event
 * and rejects, with the process's last output and no child left running, when it
 * exits early or does not get ready in time.
 */

export { LaunchError } from './child'
export type { ExitStatus, LaunchedProcess, LogEvent, ServiceRole } from './child'

interface CommonOptions {
  name?: string
  dataDir: string
  /** Default 0: the OS picks a free port; read it from `url`. */
  port?: number
  host?: string
  /** Append every line the process prints to this file (directories are created). */
  logFile?: string
  /** Added to (and overriding) the parent's environment. */
  env?: NodeJS.ProcessEnv
  extraArgs?: string[]
  /** Flags for node itself (e.g. `--cpu-prof`, `--cpu-prof-dir=DIR`), placed before the script. */
  nodeArgs?: string[]
  /** Default 30 s. */
  readyTimeoutMs?: number
  /** Start in its own process group (ignores the terminal's Ctrl-C); see SpawnSpec. Default false. */
  detached?: boolean
  /** The peer listener's port (`--peer-port`); absent: internal endpoints on the data port. */
  peerPort?: number
  /** Files every process of a secured cluster is given (src/local/credentials.ts); absent: none. */
  credentials?: LaunchCredentials
  /** Run inside this network namespace (see SpawnSpec.netns); give `host` its address there. */
  netns?: string
  /**
   * Router and coordinator only: run as a worker thread of this process, not a child
   * process (`npm start`'s default, for its memory: docs/operations.md#what-npm-start-runs).
   * `nodeArgs` do not apply to a thread.
   */
  thread?: boolean
}

export interface LaunchCredentials {
  clusterSecretFile: string
  tokensFile: string
  /**
   * PEM files (npm start -- --tls, src/local/certificates.ts): the certificate serves
   * the client (data) listener over HTTPS and, with the CA, the peer listener and every
   * peer client over mutual TLS. All three or none.
   */
  tlsCertFile?: string
  tlsKeyFile?: string
  tlsCaFile?: string
}

/** The flags that hand a process the credentials files (secret, tokens, TLS). */
export function credentialArgs (creds: LaunchCredentials | undefined): string[] {
  if (creds === undefined) return []
  const args = ['--cluster-secret-file', creds.clusterSecretFile, '--tokens-file', creds.tokensFile]
  const { tlsCertFile: cert, tlsKeyFile: key, tlsCaFile: ca } = creds
  if (cert !== undefined && key !== undefined && ca !== undefined) {
    args.push('--tls-cert', cert, '--tls-key', key, '--peer-tls-cert', cert, '--peer-tls-key', key, '--peer-tls-ca', ca)
  }
  return args
}

export interface ShardLaunchOptions extends CommonOptions {
  workers?: number
  nodeId?: string
  group?: string
  /** SQLite synchronous level: OFF | NORMAL | FULL | EXTRA. */
  synchronous?: string
}

export interface CoordinatorLaunchOptions extends CommonOptions {
  /** Initial groups, `id=http://host:port[@weight]` (used only when no map is persisted yet). */
  groups?: string[]
}

/** A router keeps nothing on disk (it follows the coordinator's map), so it has no data dir. */
export interface RouterLaunchOptions extends Omit<CommonOptions, 'peerPort' | 'dataDir'> {
  /** The URL of the coordinator whose map the router follows (absent: `--registry etcd://...` in extraArgs). */
  coordinator?: string
}

/**
 * A coordinator and a router started together, as a cluster's control and data planes.
 * `dataDir` is the coordinator's; `extraArgs` are split between the two by which of them
 * knows each flag (a flag both know goes to both), so callers name settings, not processes.
 */
export interface ControlPlaneLaunchOptions extends CoordinatorLaunchOptions {
  /** The router's port (`port` is the coordinator's; default 0 for both). */
  routerPort?: number
  routerName?: string
  coordinatorName?: string
  /** The router's log file (`logFile` is the coordinator's). */
  routerLogFile?: string
}

export interface ControlPlane {
  coordinator: LaunchedProcess
  router: LaunchedProcess
}

/**
 * The compiled entry point of a part. From dist/src/local the parts are at
 * dist/<part>/main.js; when this file runs from source (a TypeScript test loader),
 * it is at src/local and the compiled parts are under dist/ at the repo root.
 */
export function entryPoint (part: 'shards' | 'router' | 'coordinator'): string {
  const candidates = [
    resolve(__dirname, '..', '..', part, 'main.js'),
    resolve(__dirname, '..', '..', 'dist', part, 'main.js')
  ]
  const found = candidates.find((c) => existsSync(c))
  if (found === undefined) {
    throw new LaunchError(`cannot find the compiled ${part} entry point (looked at ${candidates.join(', ')}); run \`npm run build\` first`, '')
  }
  return found
}

/**
 * Node and allocator settings for every process started here (npm start, the scripts,
 * the bench, the tests), for the idle footprint of issue 10 (`npm run bench -- --only
 * footprint`; figures in docs/benchmarks.md#idle-footprint-measured). V8's young generation
 * is capped at 2 MiB per semi-space: by default it grows to 8 MiB × 2 while a process loads
 * its modules and stays there, mostly empty, ~11 MB of every idle process. 1 MiB saved a
 * little more but cost measurably more CPU per operation under YCSB load (more frequent
 * scavenges); 2 MiB was within the noise. glibc's malloc arenas are capped at 2 (default 8
 * per core), unless the environment sets MALLOC_ARENA_MAX itself.
 */
export const LEAN_NODE_ARGS: readonly string[] = ['--max-semi-space-size=2']

/**
 * The router alone gets 8 MiB semi-spaces back (a later flag overrides the lean one). A
 * batch holds its client body, its parsed ops, each group's answer and the spliced reply
 * (≈100 KB for 100 keys) across the upstream round trip; with 32 batches in flight that
 * outlives a 2 MiB young generation, so it was promoted and collected again in the old one.
 * Batch GET keys/s through the router went from ≈134k to ≈170k (router CPU per batched key
 * 4.8 → 3.1 µs) with 8 MiB, single GETs unchanged (docs/benchmarks.md#the-batch-target);
 * the price is up to ≈12 MB of the router's idle RSS.
 */
export const ROUTER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=8']

/**
 * The same young generations for a part run as a thread, which takes heap limits
 * instead of flags: V8 sizes a young generation at three semi-spaces (two, plus as much
 * for new large objects), so 2 MiB semi-spaces are 6 MB and the router's 8 MiB are 24.
 */
function threadLimits (role: 'router' | 'coordinator'): { resourceLimits: { maxYoungGenerationSizeMb: number } } {
  return { resourceLimits: { maxYoungGenerationSizeMb: role === 'router' ? 24 : 6 } }
}

function leanEnv (): NodeJS.ProcessEnv {
  return process.env.MALLOC_ARENA_MAX === undefined ? { MALLOC_ARENA_MAX: '2' } : {}
}

function flag (args: string[], name: string, value: string | number | undefined): void {
  if (value !== undefined) args.push(`--${name}`, String(value))
}

async function launch (
  role: Exclude<ServiceRole, 'etcd'>,
  name: string,
  opts: Omit<CommonOptions, 'dataDir'> & { dataDir?: string },
  roleArgs: string[]
): Promise<LaunchedProcess> {
  const port = opts.port ?? 0
  const args = ['--port', String(port)]
  if (opts.dataDir !== undefined) {
    const dataDir = resolve(opts.dataDir)
    mkdirSync(dataDir, { recursive: true })
    args.push('--data-dir', dataDir)
  }
  flag(args, 'host', opts.host)
  flag(args, 'peer-port', opts.peerPort)
  args.push(...credentialArgs(opts.credentials))
  args.push(...roleArgs, ...(opts.extraArgs ?? []))
  const script = entryPoint(role === 'shard' ? 'shards' : role)
  const logFile = opts.logFile === undefined ? undefined : resolve(opts.logFile)
  if (opts.thread === true && role !== 'shard') {
    return await spawnOrExplain(port, opts, { name, role, script, args, env: opts.env, readyTimeoutMs: opts.readyTimeoutMs, logFile, thread: threadLimits(role) })
  }
  // spawnService runs `node <script> <args>`; node's own flags must precede the script
  // (NODE_OPTIONS refuses some, --cpu-prof among them), so the first flag takes its place.
  const [firstNodeArg, ...moreNodeArgs] = [...LEAN_NODE_ARGS, ...(role === 'router' ? ROUTER_NODE_ARGS : []), ...(opts.nodeArgs ?? [])]
  return await spawnOrExplain(port, opts, {
    name,
    role,
    script: firstNodeArg ?? script,
    args: firstNodeArg === undefined ? args : [...moreNodeArgs, script, ...args],
    env: { ...leanEnv(), ...opts.env },
    logFile,
    readyTimeoutMs: opts.readyTimeoutMs,
    detached: opts.detached,
    netns: opts.netns
  })
}

async function spawnOrExplain (port: number, opts: { host?: string }, spec: SpawnSpec): Promise<LaunchedProcess> {
  const name = spec.name
  try {
    return await spawnService(spec)
  } catch (err) {
    // The commonest start failure deserves a plain sentence above the stack trace.
    if (err instanceof LaunchError && port !== 0 && err.output.includes('EADDRINUSE')) {
      throw new LaunchError(`${name}: port ${port} on ${opts.host ?? '127.0.0.1'} is already in use (${err.reason})`, err.output)
    }
    throw err
  }
}

export async function launchShard (opts: ShardLaunchOptions): Promise<LaunchedProcess> {
  const args: string[] = []
  flag(args, 'workers', opts.workers)
  flag(args, 'node-id', opts.nodeId)
  flag(args, 'group', opts.group)
  flag(args, 'synchronous', opts.synchronous)
  const p = await launch('shard', opts.name ?? opts.group ?? opts.nodeId ?? 'shard', opts, args)
  // Where it listens, for a restart by hand (npm run restart-node -- --data-dir DIR).
  const url = new URL(p.url)
  try {
    writeNodeLaunch(resolve(opts.dataDir), { host: url.hostname, port: Number(url.port), group: opts.group, workers: opts.workers, synchronous: opts.synchronous, peerPort: opts.peerPort, ...opts.credentials })
  } catch { /* a convenience: the node runs regardless */ }
  return p
}

export function launchCoordinator (opts: CoordinatorLaunchOptions): Promise<LaunchedProcess> {
  const args: string[] = []
  for (const g of opts.groups ?? []) args.push('--group', g)
  return launch('coordinator', opts.name ?? 'coordinator', opts, args)
}

export function launchRouter (opts: RouterLaunchOptions): Promise<LaunchedProcess> {
  return launch('router', opts.name ?? 'router', opts, opts.coordinator === undefined ? [] : ['--coordinator', opts.coordinator])
}

/** Starts a coordinator, then a router following it; a router that fails to start takes the coordinator down with it. */
export async function launchControlPlane (opts: ControlPlaneLaunchOptions): Promise<ControlPlane> {
  const split = splitFlags(opts.extraArgs ?? [], COORDINATOR_OPTIONS, ROUTER_OPTIONS)
  const coordinator = await launchCoordinator({ ...opts, name: opts.coordinatorName ?? 'coordinator', extraArgs: split.first })
  try {
    const { peerPort: _peer, groups: _groups, dataDir: _dir, ...common } = opts
    const router = await launchRouter({
      ...common,
      name: opts.routerName ?? 'router',
      port: opts.routerPort ?? 0,
      logFile: opts.routerLogFile,
      coordinator: coordinator.url,
      extraArgs: split.second
    })
    return { coordinator, router }
  } catch (err) {
    await coordinator.stop().catch(() => undefined)
    throw err
  }
}

/**
 * Stops everything given: routers first (they should stop sending traffic before the
 * shards go away), then coordinators, then all shard nodes in parallel, then etcd members
 * (last: nodes deregister from etcd as they stop). Every process is stopped even when
 * one fails; the first failure is rethrown afterwards. Undefined entries are skipped so
 * callers can pass half-started sets from a `finally`.
 */
export async function stopAll (processes: Iterable<LaunchedProcess | undefined>, timeoutMs?: number): Promise<void> {
  const all = [...processes].filter((p): p is LaunchedProcess => p !== undefined)
  const failures: unknown[] = []
  for (const role of ['router', 'coordinator', 'shard', 'etcd'] as const) {
    const results = await Promise.allSettled(all.filter((p) => p.role === role).map((p) => p.stop(timeoutMs)))
    for (const r of results) if (r.status === 'rejected') failures.push(r.reason)
  }
  if (failures.length > 0) throw failures[0]
}

/** The `--group` flag value for launched nodes: `g1=http://127.0.0.1:7001[+replica...][@weight]`. */
export function groupSpec (groupId: string, shard: Pick<LaunchedProcess, 'url'>, weight?: number, replicas: ReadonlyArray<Pick<LaunchedProcess, 'url'>> = []): string {
  return `${groupId}=${[shard, ...replicas].map((n) => n.url).join('+')}${weight === undefined ? '' : `@${weight}`}`
}
