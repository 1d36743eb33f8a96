import { isMainThread } from 'node:worker_threads'
import pino, { type Logger, type LoggerOptions } from 'pino'

export type { Logger }

/**
 * One JSON line per notable event on stdout. Bindings name the process in the
 * cluster's terms (component, node id, group, role, epoch, term) so that lines from
 * many processes can be merged and filtered. A part run as a worker thread
 * (src/local/runner.ts) writes to its thread's stdout stream, which its launcher reads,
 * rather than to fd 1, which belongs to the whole process.
 */
export function createLogger (bindings: Record<string, unknown>, level: string = 'info', current?: () => Record<string, unknown>): Logger {
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    // State that changes at run time (role, epoch, term) is read when a line is written.
    ...(current !== undefined ? { mixin: current } : {}),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) }
  }
  return isMainThread ? pino(options) : pino(options, process.stdout)
}
