import { decideRestart, isUnexpectedExit, PROCESS_RESTART_POLICY, type RestartPolicyOptions } from '../supervision/restart-policy'
import type { ExitStatus, LaunchedProcess, ServiceRole } from './child'

/**
 * One process of a local cluster kept running: launched, watched, and launched again
 * (by the same `launch`, so from the same data dir and port) when it exits
 * unexpectedly, with the back-off and crash-loop limit of the restart policy. An
 * operator stop (`stop()`, or the process exiting 0 after SIGTERM/SIGINT) is final.
 *
 * A failed launch (the process exits before it listens) counts as a crash, so a node
 * whose disk is gone is retried a few times and then given up on, while everything
 * else keeps running. An exit that belongs to the process's normal life (a deposed
 * coordinator exits 3 to campaign afresh) is restarted without counting as a crash, so
 * leadership changing hands often never looks like a crash loop.
 */

export type SupervisedState = 'starting' | 'running' | 'backoff' | 'gave-up' | 'exited' | 'stopped'

export type SupervisorEvent =
  | { event: 'started', name: string, pid: number, url: string, restart: boolean }
  | { event: 'crashed', name: string, pid: number | null, reason: string, delayMs: number, recentCrashes: number }
  | { event: 'gave-up', name: string, pid: number | null, reason: string, recentCrashes: number, output: string }
  | { event: 'exited', name: string, pid: number }
  | { event: 'restarting', name: string, pid: number, reason: string, delayMs: number }

export interface SupervisedOptions {
  name: string
  role: ServiceRole
  /** Starts the process; resolves once it listens (spawnService semantics). */
  launch: () => Promise<LaunchedProcess>
  policy?: RestartPolicyOptions
  onEvent?: (event: SupervisorEvent) => void
  /** The launched process leads its own process group: SIGKILL what is left of it after it dies. */
  killGroupOnExit?: boolean
  /** Why an exit is to be restarted without counting as a crash (undefined: it is judged as usual). */
  plannedRestart?: (status: ExitStatus) => string | undefined
}

export class SupervisedProcess {
  readonly name: string
  readonly role: ServiceRole
  private stateNow: SupervisedState = 'starting'
  private proc: LaunchedProcess | undefined
  private launching: Promise<LaunchedProcess> | undefined
  private crashes: number[] = []
  private attempts = 0
  private timer: NodeJS.Timeout | undefined
  private stopRequested = false
  private settleFirst: ((ok: boolean) => void) | undefined
  /** Settles after the first attempt: true when it runs, false when that start failed. */
  readonly firstAttempt: Promise<boolean>

  constructor (private readonly opts: SupervisedOptions) {
    this.name = opts.name
    this.role = opts.role
    this.firstAttempt = new Promise((resolve) => { this.settleFirst = resolve })
    void this.attempt()
  }

  get state (): SupervisedState {
    return this.stateNow
  }

  /** The running process, if any. */
  get current (): LaunchedProcess | undefined {
    return this.proc
  }

  /**
   * No restart from now on (a pending one is cancelled, a crash or a failed start is not
   * retried); the process keeps running until stop(). A cluster stop calls this on every
   * process first, so none is restarted while the others are being stopped in order.
   */
  cancelRestarts (): void {
    this.stopRequested = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  /** Operator stop: cancels a pending restart and stops the process (SIGTERM, SIGKILL after timeoutMs). */
  async stop (timeoutMs?: number): Promise<void> {
    this.cancelRestarts()
    if (this.stateNow !== 'gave-up') this.stateNow = 'stopped'
    const launching = this.launching
    if (launching !== undefined) await launching.then((p) => p.stop(timeoutMs), () => undefined)
    await this.proc?.stop(timeoutMs)
    this.settle(false)
  }

  private settle (ok: boolean): void {
    this.settleFirst?.(ok)
    this.settleFirst = undefined
  }

  private async attempt (): Promise<void> {
    this.timer = undefined
    if (this.stopRequested) return
    const restart = this.attempts > 0
    this.attempts++
    this.stateNow = 'starting'
    let p: LaunchedProcess
    try {
      this.launching = this.opts.launch()
      p = await this.launching
    } catch (err) {
      this.launching = undefined
      if (this.stopRequested) {
        this.settle(false)
        return
      }
      this.crashed(null, `did not start: ${firstLine(err)}`, (err as { output?: string }).output ?? '')
      this.settle(false)
      return
    }
    this.launching = undefined
    if (this.stopRequested) {
      await p.stop()
      return
    }
    this.proc = p
    this.stateNow = 'running'
    this.opts.onEvent?.({ event: 'started', name: this.name, pid: p.pid, url: p.url, restart })
    this.settle(true)
    void p.exited.then((st) => this.onExit(p, st))
  }

  private onExit (p: LaunchedProcess, st: ExitStatus): void {
    if (this.proc !== p) return
    this.proc = undefined
    // Workers of a SIGKILLed node leave on their own when their IPC channel closes; make sure.
    // (A thread has no group of its own: its pid is this process's.)
    if (this.opts.killGroupOnExit === true && p.threadId === undefined && p.pid > 0) {
      try { process.kill(-p.pid, 'SIGKILL') } catch { /* the group is gone */ }
    }
    if (this.stopRequested) return
    const planned = this.opts.plannedRestart?.(st)
    if (planned !== undefined) {
      const delayMs = (this.opts.policy ?? PROCESS_RESTART_POLICY).firstDelayMs
      this.stateNow = 'backoff'
      this.opts.onEvent?.({ event: 'restarting', name: this.name, pid: p.pid, reason: planned, delayMs })
      this.timer = setTimeout(() => { void this.attempt() }, delayMs)
      return
    }
    if (!isUnexpectedExit(st)) {
      // Told to stop by someone (kill -TERM <pid>) and drained: not ours to undo.
      this.stateNow = 'exited'
      this.opts.onEvent?.({ event: 'exited', name: this.name, pid: p.pid })
      return
    }
    this.crashed(p.pid, `exited unexpectedly (${st.signal !== null ? `signal ${st.signal}` : `code ${String(st.code)}`})`, p.output())
  }

  private crashed (pid: number | null, reason: string, output: string): void {
    const { history, decision } = decideRestart(this.crashes, Date.now(), this.opts.policy ?? PROCESS_RESTART_POLICY)
    this.crashes = history
    if (decision.action === 'give-up') {
      this.stateNow = 'gave-up'
      this.opts.onEvent?.({ event: 'gave-up', name: this.name, pid, reason, recentCrashes: decision.recentCrashes, output: lastLines(output, 5) })
      return
    }
    this.stateNow = 'backoff'
    this.opts.onEvent?.({ event: 'crashed', name: this.name, pid, reason, delayMs: decision.delayMs, recentCrashes: decision.recentCrashes })
    this.timer = setTimeout(() => { void this.attempt() }, decision.delayMs)
  }
}

function firstLine (err: unknown): string {
  const e = err as { reason?: unknown, message?: unknown }
  const text = typeof e.reason === 'string' ? e.reason : typeof e.message === 'string' ? e.message : String(err)
  return text.split('\n')[0] ?? text
}

function lastLines (text: string, n: number): string {
  return text.split('\n').filter((l) => l.trim() !== '').slice(-n).join('\n')
}

/** One human line per supervisor event, as `npm start` prints it. */
export function describeEvent (e: SupervisorEvent, logHint: (name: string) => string): string {
  switch (e.event) {
    case 'started':
      return e.restart ? `${e.name} restarted (pid ${e.pid}) at ${e.url}` : `${e.name} started (pid ${e.pid}) at ${e.url}`
    case 'crashed':
      return `${e.name}${e.pid === null ? '' : ` (pid ${e.pid})`} ${e.reason}; restarting in ${(e.delayMs / 1000).toFixed(1)} s (crash ${e.recentCrashes} in the restart window)`
    case 'gave-up':
      return `${e.name}${e.pid === null ? '' : ` (pid ${e.pid})`} ${e.reason}; giving up after ${e.recentCrashes} crashes in the restart window — fix the cause (see ${logHint(e.name)}) and run npm start again, or replace the node (npm run replace-node)${e.output === '' ? '' : `\n  last output:\n    ${e.output.split('\n').join('\n    ')}`}`
    case 'exited':
      return `${e.name} (pid ${e.pid}) stopped (exit code 0, told to stop by someone else); not restarting it`
    case 'restarting':
      return `${e.name} (pid ${e.pid}) ${e.reason}; restarting it in ${(e.delayMs / 1000).toFixed(1)} s`
  }
}
