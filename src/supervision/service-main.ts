import { ConfigError, loadConfig, usage, type Config, type OptionTable } from '../config/options'
import { createLogger, type Logger } from '../log'
import { protectedModeRefusal } from '../auth/protected-mode'
import type { ListeningEvent } from '../protocol/wire'
import { onSignal, type ThreadSignal } from './thread-signals'

/**
 * The entry point shared by the router and the coordinator (`node dist/<part>/main.js`):
 * --help, flags, protected mode, crash handlers, and a drain on SIGTERM/SIGINT (a second
 * signal exits at once), SIGHUP to re-read the tokens file, and the `listening` line
 * the launcher waits for. The same whether the part runs as a process or as a worker
 * thread of `npm start`'s launcher (src/local/runner.ts): there, process.exit() ends the
 * thread, and the signals arrive as messages (src/supervision/thread-signals.ts).
 */

export interface RunningService {
  url: string
  close: () => Promise<void>
  reloadTokens: () => boolean
  /** Extra fields of the `listening` log line. */
  logFields: Record<string, unknown>
}

interface ServiceSpec<T extends OptionTable> {
  service: ListeningEvent['service']
  command: string
  summary: string
  options: T
  start: (config: Config<T>, log: Logger) => Promise<RunningService>
}

type Protectable = { host: string, clusterSecretFile: string, tokensFile: string, insecure: boolean }

export async function runService<T extends OptionTable> (spec: ServiceSpec<T>): Promise<void> {
  if (process.argv.slice(2).includes('--help')) {
    process.stdout.write(usage(spec.command, spec.summary, spec.options) + '\n')
    return
  }
  const config = configOrExit(spec)
  const c = config as unknown as Protectable
  const refusal = protectedModeRefusal({ host: c.host, hasSecret: c.clusterSecretFile !== '', hasTokens: c.tokensFile !== '', insecure: c.insecure })
  if (refusal !== undefined) {
    process.stderr.write(`shardkv ${spec.service}: ${refusal}\n`)
    process.exit(1)
  }
  const log = createLogger({ component: spec.service }, (config as unknown as { logLevel: string }).logLevel)
  installCrashHandlers(log)
  let running: RunningService
  try {
    running = await spec.start(config, log)
  } catch (err) {
    if (err instanceof ConfigError) exitWithUsageError(spec, err.message)
    log.fatal({ event: 'start-failed', err }, `${spec.service} failed to start`)
    process.exit(1)
  }
  installSignalHandlers(spec.service, running, log)
  const listening: ListeningEvent = { event: 'listening', service: spec.service, url: running.url }
  log.info({ ...listening, ...running.logFields }, `${spec.service} listening on ${running.url}`)
}

function configOrExit<T extends OptionTable> (spec: ServiceSpec<T>): Config<T> {
  try {
    return loadConfig(spec.options)
  } catch (err) {
    if (err instanceof ConfigError) exitWithUsageError(spec, err.message)
    throw err
  }
}

function exitWithUsageError (spec: { service: string }, message: string): never {
  process.stderr.write(`shardkv ${spec.service}: ${message} (see --help)\n`)
  process.exit(2)
}

/** Crashes are logged, then end the process: a process in an unknown state must not keep serving. */
function installCrashHandlers (log: Logger): void {
  process.on('uncaughtException', (err) => {
    log.fatal({ event: 'crash', err }, 'uncaught exception')
    process.exit(1)
  })
  process.on('unhandledRejection', (reason) => {
    log.fatal({ event: 'crash', err: reason }, 'unhandled promise rejection')
    process.exit(1)
  })
}

function installSignalHandlers (service: string, running: RunningService, log: Logger): void {
  let stopping = false
  const stop = (signal: ThreadSignal): void => {
    if (stopping) {
      log.warn({ event: 'shutdown-forced', signal }, 'second signal: exiting without draining')
      process.exit(1)
    }
    stopping = true
    log.info({ event: 'shutdown', signal }, 'draining')
    running.close().then(() => {
      log.info({ event: 'stopped' }, `${service} stopped`)
      process.exit(0)
    }, (err: unknown) => {
      log.error({ event: 'shutdown-failed', err }, 'shutdown failed')
      process.exit(1)
    })
  }
  onSignal('SIGTERM', stop)
  onSignal('SIGINT', stop)
  // SIGHUP re-reads the tokens file (revoke or add a token without a restart).
  onSignal('SIGHUP', () => { running.reloadTokens() })
}
