/**
 * When to restart a process that exited unexpectedly, as a pure function of its recent
 * crash times. Shared by the shard node's supervisor (its workers) and the local
 * cluster launcher (whole nodes and routers).
 *
 * A crash is retried at once (or after a short delay), so a single crash costs little;
 * a process that dies on start (a bad disk, a corrupt file, a busy port) must not become
 * a fork bomb, so crashes beyond `freeCrashes` within `windowMs` back off exponentially,
 * and a caller that sets `giveUpAfter` stops trying once that many crashes fall in the
 * window (a crash loop that no delay will cure wants a person, not a retry).
 */

export interface RestartPolicyOptions {
  /** Crashes older than this no longer count. */
  windowMs: number
  /** Crashes in the window that are retried after `firstDelayMs`, without back-off. */
  freeCrashes: number
  /** Delay before retrying a free crash (0: at once). */
  firstDelayMs: number
  /** The first backed-off delay; each further crash in the window doubles it. */
  baseDelayMs: number
  maxDelayMs: number
  /** Crashes in the window at which the process is given up on (Infinity: never). */
  giveUpAfter: number
}

export type RestartDecision =
  | { action: 'restart', delayMs: number, recentCrashes: number }
  | { action: 'give-up', recentCrashes: number }

/** Workers: never given up on (the node keeps serving with the rest), at most 5 s apart. */
export const WORKER_RESTART_POLICY: RestartPolicyOptions = {
  windowMs: 10_000, freeCrashes: 3, firstDelayMs: 0, baseDelayMs: 100, maxDelayMs: 5_000, giveUpAfter: Infinity
}

/**
 * Nodes and routers of a local cluster: the first crash is retried after half a second
 * (long enough for the dead process's port and file locks to be released), then 1, 2, 4 s;
 * the sixth crash within two minutes gives up.
 */
export const PROCESS_RESTART_POLICY: RestartPolicyOptions = {
  windowMs: 120_000, freeCrashes: 1, firstDelayMs: 500, baseDelayMs: 1_000, maxDelayMs: 15_000, giveUpAfter: 6
}

/**
 * Records a crash at `now` into `history` (the previous crash times, oldest first) and
 * decides. Returns the history to keep (only crashes still in the window).
 */
export function decideRestart (
  history: readonly number[],
  now: number,
  options: RestartPolicyOptions
): { history: number[], decision: RestartDecision } {
  const recent = [...history, now].filter((t) => t >= now - options.windowMs)
  const n = recent.length
  if (n >= options.giveUpAfter) return { history: recent, decision: { action: 'give-up', recentCrashes: n } }
  const excess = n - options.freeCrashes
  const delayMs = excess <= 0
    ? options.firstDelayMs
    : Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (excess - 1))
  return { history: recent, decision: { action: 'restart', delayMs, recentCrashes: n } }
}

/**
 * Whether an exit is one to restart after: a process that exits with code 0 was told
 * to stop (SIGTERM or SIGINT from an operator, `kill -TERM`, a remove-shard) and
 * drained; a non-zero code or a death by signal (SIGKILL, a crash) is unexpected.
 */
export function isUnexpectedExit (status: { code: number | null, signal: string | null }): boolean {
  return status.code !== 0 || status.signal !== null
}
