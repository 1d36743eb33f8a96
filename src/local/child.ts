import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'
import { createInterface } from 'node:readline'
import { LineTail } from './line-tail'

/**
 * Runs one shardkv process (shard node or router) as a child and tells when it is
 * ready: every shardkv process prints one JSON line with `"event":"listening"` once it
 * accepts connections (src/protocol/wire.ts ListeningEvent). Waiting for that line,
 * rather than polling the port, means a started process is really serving and its
 * url is known even when it was started with --port 0. A program that prints no such
 * line (an etcd member, src/local/etcd-members.ts) is run with a readiness probe instead.
 */

export type ServiceRole = 'shard' | 'router' | 'coordinator' | 'etcd'

export interface ExitStatus {
  code: number | null
  signal: NodeJS.Signals | null
}

/** One JSON log line of a child (pino object). */
export type LogEvent = Record<string, unknown>

export interface LaunchedProcess {
  name: string
  role: ServiceRole
  /** Base url from the listening event, e.g. http://127.0.0.1:7001 */
  url: string
  pid: number
  child: ChildProcess
  /** Settles when the process has exited (never rejects). */
  exited: Promise<ExitStatus>
  /** Last ~200 lines of stdout and stderr, for error messages. */
  output(): string
  /** Sends a signal if the process still runs (no-op otherwise). */
  signal(sig: NodeJS.Signals): void
  /** SIGTERM, wait for exit, SIGKILL after timeoutMs (default 10 s). Idempotent. */
  stop(timeoutMs?: number): Promise<void>
  /**
   * Resolves with the next JSON line whose `event` equals `match` (or that satisfies
   * it). Only lines printed after the call count, so call it before causing the event:
   * `const done = p.waitForEvent('rolling-restart-complete'); p.signal('SIGUSR2'); await done`.
   * Rejects when the process exits first or after timeoutMs (default 30 s).
   */
  waitForEvent(match: string | ((event: LogEvent) => boolean), timeoutMs?: number): Promise<LogEvent>
}

interface SpawnCommon {
  name: string
  role: ServiceRole
  args: string[]
  env?: NodeJS.ProcessEnv | undefined
  logFile?: string | undefined
  readyTimeoutMs?: number | undefined
  /**
   * Own process group: a terminal's Ctrl-C then reaches only the parent, which can
   * stop children in order (router before shards) instead of all dying at once.
   */
  detached?: boolean | undefined
  /**
   * Run inside this network namespace (`ip netns exec NAME ...`, root only): a test places
   * a process on its own address to partition it for real (test/harness/netns.ts).
   * `ip netns exec` execs the program, so `pid` is still the program's own and stopping
   * by PID works as without it.
   */
  netns?: string | undefined
}

/**
 * A shardkv part is `node script args...`, ready when it prints its listening line;
 * another program (etcd) is `executable args...` on PATH, ready when `ready` (polled
 * every 100 ms) gives its url.
 */
export type SpawnSpec = SpawnCommon & (
  | { /** Absolute path of the compiled entry point (dist/.../main.js). */ script: string, executable?: undefined, ready?: undefined }
  | { executable: string, ready: () => Promise<string | undefined>, script?: undefined }
)

export class LaunchError extends Error {
  readonly code = 'ERR_SHARDKV_LAUNCH'
  /** The message without the appended output. */
  readonly reason: string
  constructor (reason: string, readonly output: string) {
    super(output === '' ? reason : `${reason}\n--- last output ---\n${output}`)
    this.name = 'LaunchError'
    this.reason = reason
  }
}

const DEFAULT_READY_TIMEOUT_MS = 30_000
const DEFAULT_STOP_TIMEOUT_MS = 10_000
/** How long a failed start waits for the child's last words before reporting. */
const OUTPUT_DRAIN_MS = 1000

// Safety net: if the parent exits (normally or by an uncaught exception) with children
// still running, kill them, so a crashed script or test never leaves servers behind
// holding ports and database files. (A SIGKILLed parent cannot be helped.)
const live = new Map<number, { detached: boolean }>()
let exitHookInstalled = false
function registerLive (pid: number, detached: boolean): void {
  live.set(pid, { detached })
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const [pid, info] of live) hardKill(pid, info.detached)
  })
}

/** SIGKILL the process, and its whole group when it leads one (takes cluster workers too). */
function hardKill (pid: number, detached: boolean): void {
  if (detached) {
    try { process.kill(-pid, 'SIGKILL') } catch { /* group already gone */ }
  }
  try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
}

function openLog (path: string): WriteStream {
  mkdirSync(dirname(path), { recursive: true })
  return createWriteStream(path, { flags: 'a' })
}

function parseJsonLine (line: string): LogEvent | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const value: unknown = JSON.parse(line)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as LogEvent : undefined
  } catch {
    return undefined
  }
}

function delay (ms: number): Promise<'timeout'> {
  return new Promise((resolve) => setTimeout(() => resolve('timeout'), ms).unref())
}

/** Spawns the process and resolves once it prints its listening event. */
export async function spawnService (spec: SpawnSpec): Promise<LaunchedProcess> {
  const detached = spec.detached === true
  const tail = new LineTail()
  const log = spec.logFile === undefined ? undefined : openLog(spec.logFile)
  const [program, programArgs] = spec.executable === undefined ? [process.execPath, [spec.script, ...spec.args]] : [spec.executable, spec.args]
  const [file, argv] = spec.netns === undefined ? [program, programArgs] : ['ip', ['netns', 'exec', spec.netns, program, ...programArgs]]
  const child = spawn(file, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...spec.env },
    detached
  })

  let exitStatus: ExitStatus | undefined
  let spawnError: Error | undefined
  const exited = new Promise<ExitStatus>((resolve) => {
    const done = (status: ExitStatus): void => {
      if (exitStatus !== undefined) return
      exitStatus = status
      if (child.pid !== undefined) live.delete(child.pid)
      resolve(status)
    }
    child.once('exit', (code, signal) => done({ code, signal }))
    // 'error' without 'exit' means it never ran (spawn failed).
    child.once('error', (err) => {
      spawnError = err
      if (child.pid === undefined) done({ code: null, signal: null })
    })
  })
  if (child.pid !== undefined) registerLive(child.pid, detached)

  // Keep reading for the child's whole life: an unread pipe fills up and blocks its logging.
  const listeners = new Set<(event: LogEvent) => void>()
  const streamClosed: Array<Promise<void>> = []
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue
    const rl = createInterface({ input: stream, crlfDelay: Infinity })
    const isStdout = stream === child.stdout
    rl.on('line', (line) => {
      tail.push(line)
      log?.write(line + '\n')
      if (!isStdout || listeners.size === 0) return
      const event = parseJsonLine(line)
      if (event !== undefined) for (const l of [...listeners]) l(event)
    })
    streamClosed.push(new Promise((resolve) => rl.once('close', resolve)))
  }
  const allClosed = Promise.all(streamClosed).then(() => undefined)
  if (log !== undefined) void allClosed.then(() => log.end())

  const label = `${spec.name} (${spec.role}, pid ${child.pid ?? 'none'})`
  const pid = child.pid ?? -1

  const signal = (sig: NodeJS.Signals): void => {
    if (exitStatus !== undefined || child.pid === undefined) return
    try { process.kill(child.pid, sig) } catch { /* exited meanwhile */ }
  }

  let stopping: Promise<void> | undefined
  const stop = (timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> => {
    stopping ??= (async () => {
      if (exitStatus !== undefined || child.pid === undefined) return
      signal('SIGTERM')
      if (await Promise.race([exited, delay(timeoutMs)]) === 'timeout') {
        hardKill(child.pid, detached)
        await exited
      }
    })()
    return stopping
  }

  const waitFor = (test: (event: LogEvent) => boolean, what: string, timeoutMs: number): Promise<LogEvent> => {
    return new Promise<LogEvent>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer)
        listeners.delete(onEvent)
      }
      const onEvent = (event: LogEvent): void => {
        if (!test(event)) return
        cleanup()
        resolve(event)
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new LaunchError(`${label}: no ${what} within ${timeoutMs} ms`, tail.toString()))
      }, timeoutMs)
      listeners.add(onEvent)
      void exited.then(async (st) => {
        if (!listeners.has(onEvent)) return
        // The event may be among the last lines, still in the pipe when 'exit' fires.
        await Promise.race([allClosed, delay(OUTPUT_DRAIN_MS)])
        if (!listeners.has(onEvent)) return
        cleanup()
        reject(new LaunchError(`${label} exited (code ${st.code}, signal ${st.signal}) before ${what}`, tail.toString()))
      })
    })
  }

  const waitForEvent = (match: string | ((event: LogEvent) => boolean), timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<LogEvent> =>
    typeof match === 'string'
      ? waitFor((e) => e.event === match, `"${match}" event`, timeoutMs)
      : waitFor(match, 'matching log event', timeoutMs)

  const proc: LaunchedProcess = {
    name: spec.name,
    role: spec.role,
    url: '',
    pid,
    child,
    exited,
    output: () => tail.toString(),
    signal,
    stop,
    waitForEvent
  }

  const timeoutMs = spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  try {
    if (spec.ready !== undefined) {
      proc.url = await probeUntilReady(spec.ready, () => exitStatus, label, timeoutMs)
      return proc
    }
    const event = await waitFor(
      // Not matching on "role": pino lines may carry the process's cluster role (primary) under that name too.
      (e) => e.event === 'listening' && typeof e.url === 'string',
      '"listening" event',
      timeoutMs
    )
    proc.url = (event.url as string).replace(/\/+$/, '')
    return proc
  } catch (err) {
    // Never leave a half-started child behind: kill it, then report with its output.
    await stop(2000)
    await Promise.race([allClosed, delay(OUTPUT_DRAIN_MS)])
    const why = spawnError !== undefined
      ? `${label}: could not spawn ${file}: ${spawnError.message}`
      : err instanceof LaunchError ? err.reason : String(err)
    throw new LaunchError(why, tail.toString())
  }
}

/** Polls `ready` until it gives the url; throws when the process exits first or the time is up. */
async function probeUntilReady (ready: () => Promise<string | undefined>, exit: () => ExitStatus | undefined, label: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const st = exit()
    if (st !== undefined) throw new LaunchError(`${label} exited (code ${st.code}, signal ${st.signal}) before it was ready`, '')
    const url = await ready().catch(() => undefined)
    if (url !== undefined) return url.replace(/\/+$/, '')
    if (Date.now() > deadline) throw new LaunchError(`${label}: not ready within ${timeoutMs} ms`, '')
    await delay(100)
  }
}
