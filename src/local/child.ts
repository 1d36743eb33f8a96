import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'
import type { ResourceLimits } from 'node:worker_threads'
import { createInterface } from 'node:readline'
import { LineTail } from './line-tail'
import { hardKill, processRunner, threadRunner, type ExitStatus, type ServiceRunner } from './runner'

/**
 * Runs one shardkv process (shard node, coordinator or router) as a child, or as a thread
 * (src/local/runner.ts), and tells when it is
 * ready: every shardkv process prints one JSON line with `"event":"listening"` once it
 * accepts connections (src/protocol/wire.ts ListeningEvent). Waiting for that line,
 * rather than polling the port, means a started process is really serving and its
 * url is known even when it was started with --port 0. A program that prints no such
 * line (an etcd member, src/local/etcd-members.ts) is run with a readiness probe instead.
 */

export type ServiceRole = 'shard' | 'router' | 'coordinator' | 'etcd'

export type { ExitStatus } from './runner'

/** One JSON log line of a child (pino object). */
export type LogEvent = Record<string, unknown>

export interface LaunchedProcess {
  name: string
  role: ServiceRole
  /** Base url from the listening event, e.g. http://127.0.0.1:7001 */
  url: string
  /** The OS process it runs in (this process's, for a thread). */
  pid: number
  /** Set when it runs as a worker thread of this process (spawned with `thread`): no process of its own to signal. */
  threadId: number | undefined
  /** Whether it has not exited yet. */
  running(): boolean
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
  /**
   * Run `script` as a worker thread of this process instead of a child process
   * (src/local/runner.ts), with these V8 heap limits. Not with `netns` or an executable.
   */
  thread?: { resourceLimits?: ResourceLimits } | undefined
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
  const runner = startRunner(spec, detached)
  const file = spec.executable ?? spec.script

  let exitStatus: ExitStatus | undefined
  let spawnError: Error | undefined
  const exited = new Promise<ExitStatus>((resolve) => {
    const done = (status: ExitStatus, note?: string): void => {
      if (exitStatus !== undefined) return
      if (note !== undefined) for (const line of note.split('\n')) tail.push(line)
      exitStatus = status
      if (runner.threadId === undefined && runner.pid !== undefined) live.delete(runner.pid)
      resolve(status)
    }
    runner.onExit(done)
    // An error without an exit means it never ran (spawn failed).
    runner.onSpawnError((err) => {
      spawnError = err
      done({ code: null, signal: null })
    })
  })
  if (runner.threadId === undefined && runner.pid !== undefined) registerLive(runner.pid, detached)

  // Keep reading for the child's whole life: an unread pipe fills up and blocks its logging.
  const listeners = new Set<(event: LogEvent) => void>()
  const streamClosed: Array<Promise<void>> = []
  for (const stream of [runner.stdout, runner.stderr]) {
    if (stream === null) continue
    const rl = createInterface({ input: stream, crlfDelay: Infinity })
    const isStdout = stream === runner.stdout
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

  const label = `${spec.name} (${spec.role}, pid ${runner.pid ?? 'none'}${runner.threadId === undefined ? '' : ` thread ${runner.threadId}`})`
  const pid = runner.pid ?? -1

  const signal = (sig: NodeJS.Signals): void => {
    if (exitStatus === undefined) runner.signal(sig)
  }

  let stopping: Promise<void> | undefined
  const stop = (timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> => {
    stopping ??= (async () => {
      if (exitStatus !== undefined || runner.pid === undefined) return
      // A thread that is not listening yet has no handler for the posted SIGTERM (a process
      // would die of the signal itself): end it now.
      if (runner.threadId !== undefined && proc.url === '') {
        runner.kill()
        await exited
        return
      }
      signal('SIGTERM')
      if (await Promise.race([exited, delay(timeoutMs)]) === 'timeout') {
        runner.kill()
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
    threadId: runner.threadId,
    running: () => exitStatus === undefined,
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

function startRunner (spec: SpawnSpec, detached: boolean): ServiceRunner {
  const env = { ...process.env, ...spec.env }
  if (spec.thread !== undefined) {
    if (spec.script === undefined || spec.netns !== undefined) throw new LaunchError(`${spec.name}: only a shardkv part outside a network namespace can run as a thread`, '')
    return threadRunner({ script: spec.script, argv: spec.args, env, resourceLimits: spec.thread.resourceLimits })
  }
  const [program, programArgs] = spec.executable === undefined ? [process.execPath, [spec.script, ...spec.args]] : [spec.executable, spec.args]
  const [file, argv] = spec.netns === undefined ? [program, programArgs] : ['ip', ['netns', 'exec', spec.netns, program, ...programArgs]]
  return processRunner({ file, argv, env, detached })
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
