import { decideRestart, WORKER_RESTART_POLICY, type RestartPolicyOptions } from '../src/supervision/restart-policy'

/**
 * When to replace a crashed worker: the shared pure policy (src/supervision/restart-policy.ts)
 * with the crash history it needs. Workers are never given up on.
 */
export class RestartPolicy {
  private crashes: number[] = []
  constructor (private readonly options: RestartPolicyOptions = WORKER_RESTART_POLICY) {}

  /** Records a crash at `now` and returns how long to wait before forking its replacement. */
  onCrash (now: number): number {
    const { history, decision } = decideRestart(this.crashes, now, this.options)
    this.crashes = history
    return decision.action === 'restart' ? decision.delayMs : this.options.maxDelayMs
  }

  recentCrashes (): number {
    return this.crashes.length
  }
}
