import { spawn } from 'node:child_process'
import type { Readable } from 'node:stream'
import { Worker, type ResourceLimits } from 'node:worker_threads'
import { threadSignal } from '../supervision/thread-signals'

/**
 * Where a launched shardkv part runs: a child process (every part, by default) or a worker
 * thread of this process (`npm start`'s router and coordinator: see
 * docs/operations.md#what-npm-start-runs). src/local/child.ts reads its output, waits for its
 * listening line and stops it the same way for both; only this module knows the difference.
 */

export interface ExitStatus {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface ServiceRunner {
  /** The OS process it runs in: the child's, or this process's for a thread (undefined: spawn failed). */
  pid: number | undefined
  /** Set for a worker thread: it has no process of its own to signal or kill. */
  threadId: number | undefined
  stdout: Readable | null
  stderr: Readable | null
  /** `note`: what ended it when its own output cannot say (a thread whose script failed to load). */
  onExit: (cb: (status: ExitStatus, note?: string) => void) => void
  /** Called when it never ran (spawn failed), without an exit. */
  onSpawnError: (cb: (err: Error) => void) => void
  /** Delivers SIGTERM, SIGINT, SIGHUP (or SIGKILL) to the part. */
  signal: (sig: NodeJS.Signals) => void
  /** Ends it now: SIGKILL of the process (its group too when detached), or terminate() of the thread. */
  kill: () => void
}

export interface ProcessRunSpec {
  file: string
  argv: string[]
  env: NodeJS.ProcessEnv
  detached: boolean
}

export function processRunner (spec: ProcessRunSpec): ServiceRunner {
  const child = spawn(spec.file, spec.argv, { stdio: ['ignore', 'pipe', 'pipe'], env: spec.env, detached: spec.detached })
  return {
    pid: child.pid,
    threadId: undefined,
    stdout: child.stdout,
    stderr: child.stderr,
    onExit: (cb) => { child.once('exit', (code, signal) => cb({ code, signal })) },
    onSpawnError: (cb) => { child.once('error', (err) => { if (child.pid === undefined) cb(err) }) },
    signal: (sig) => {
      if (child.pid === undefined) return
      try { process.kill(child.pid, sig) } catch { /* exited meanwhile */ }
    },
    kill: () => { if (child.pid !== undefined) hardKill(child.pid, spec.detached) }
  }
}

/** SIGKILL the process, and its whole group when it leads one (takes cluster workers too). */
export function hardKill (pid: number, detached: boolean): void {
  if (detached) {
    try { process.kill(-pid, 'SIGKILL') } catch { /* group already gone */ }
  }
  try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
}

export interface ThreadRunSpec {
  script: string
  argv: string[]
  env: NodeJS.ProcessEnv
  /** V8 heap limits of the thread's own isolate (its young generation stands in for --max-semi-space-size). */
  resourceLimits?: ResourceLimits
}

/**
 * A part as a worker thread: its own V8 isolate, event loop and heap, sharing this
 * process's binary pages, allocator and libuv pool. Signals cannot reach a thread, so
 * SIGTERM, SIGINT and SIGHUP are posted to it (src/supervision/thread-signals.ts) and
 * SIGKILL terminates it. Its pino lines go to its own stdout stream (src/log.ts), which
 * is read here like a child's pipe. An uncaught exception or process.exit() inside ends
 * the thread only, with that exit code.
 */
export function threadRunner (spec: ThreadRunSpec): ServiceRunner {
  const worker = new Worker(spec.script, { argv: spec.argv, env: spec.env, stdout: true, stderr: true, ...(spec.resourceLimits === undefined ? {} : { resourceLimits: spec.resourceLimits }) })
  let terminated = false
  let errored: Error | undefined
  // Without a listener, a thread's uncaught error would be thrown in this (the launcher's) thread.
  worker.on('error', (err) => { errored = err })
  return {
    pid: process.pid,
    threadId: worker.threadId,
    stdout: worker.stdout,
    stderr: worker.stderr,
    onExit: (cb) => {
      worker.once('exit', (code) => {
        const note = errored === undefined ? undefined : errored.stack ?? errored.message
        cb(terminated ? { code: null, signal: 'SIGKILL' } : { code, signal: null }, note)
      })
    },
    onSpawnError: () => { /* a Worker that cannot load its script exits with an error instead */ },
    signal: (sig) => {
      if (sig === 'SIGKILL') {
        terminated = true
        void worker.terminate()
        return
      }
      worker.postMessage(threadSignal(sig))
    },
    kill: () => {
      terminated = true
      void worker.terminate()
    }
  }
}
