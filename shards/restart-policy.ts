/**
 * When to replace a crashed worker. A crash is replaced at once, so a single crash is
 * invisible; but a worker that dies on start (bad disk, corrupt file) must not
 * become a fork bomb, so repeated crashes within a window back off exponentially.
 */
export interface RestartPolicyOptions {
  windowMs: number
  freeCrashes: number
  baseDelayMs: number
  maxDelayMs: number
}

export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = { windowMs: 10_000, freeCrashes: 3, baseDelayMs: 100, maxDelayMs: 5_000 }

export class RestartPolicy {
  private readonly crashes: number[] = []
  constructor (private readonly options: RestartPolicyOptions = DEFAULT_RESTART_POLICY) {}

  /** Records a crash at `now` and returns how long to wait before forking its replacement. */
  onCrash (now: number): number {
    this.crashes.push(now)
    while (this.crashes.length > 0 && (this.crashes[0] as number) < now - this.options.windowMs) this.crashes.shift()
    const excess = this.crashes.length - this.options.freeCrashes
    if (excess <= 0) return 0
    return Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (excess - 1))
  }

  recentCrashes (): number {
    return this.crashes.length
  }
}
