import { ConfigError, loadConfig, ROUTER_OPTIONS, usage, type RouterConfig } from '../src/config/options'
import { createLogger, type Logger } from '../src/log'
import { protectedModeRefusal } from '../src/auth/protected-mode'
import type { ListeningEvent } from '../src/protocol/wire'
import { startRouter, type RunningRouter } from './server'

/** Entry point of a router: `node dist/router/main.js [options]`. */

const COMMAND = 'node dist/router/main.js'

function configOrExit (): RouterConfig {
  try {
    return loadConfig(ROUTER_OPTIONS)
  } catch (err) {
    if (err instanceof ConfigError) exitWithUsageError(err.message)
    throw err
  }
}

function exitWithUsageError (message: string): never {
  process.stderr.write(`shardkv router: ${message} (see --help)\n`)
  process.exit(2)
}

/** Crashes are logged, then end the process: a router in an unknown state must not keep routing. */
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

function installSignalHandlers (router: RunningRouter, log: Logger): void {
  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ event: 'shutdown-forced', signal }, 'second signal: exiting without draining')
      process.exit(1)
    }
    stopping = true
    log.info({ event: 'shutdown', signal }, 'draining')
    router.close().then(() => {
      log.info({ event: 'stopped' }, 'router stopped')
      process.exit(0)
    }, (err: unknown) => {
      log.error({ event: 'shutdown-failed', err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // SIGHUP re-reads the tokens file (revoke or add a token without a restart).
  process.on('SIGHUP', () => { router.reloadTokens() })
}

async function main (): Promise<void> {
  if (process.argv.slice(2).includes('--help')) {
    process.stdout.write(usage(COMMAND, 'Start a router: the front door that forwards each key to the shard group that owns it.', ROUTER_OPTIONS) + '\n')
    return
  }
  const config = configOrExit()
  const refusal = protectedModeRefusal({ host: config.host, hasSecret: config.clusterSecretFile !== '', hasTokens: config.tokensFile !== '', insecure: config.insecure })
  if (refusal !== undefined) {
    process.stderr.write(`shardkv router: ${refusal}\n`)
    process.exit(1)
  }
  const log = createLogger({ component: 'router' }, config.logLevel)
  installCrashHandlers(log)
  let router: RunningRouter
  try {
    router = await startRouter(config, log)
  } catch (err) {
    if (err instanceof ConfigError) exitWithUsageError(err.message)
    log.fatal({ event: 'start-failed', err }, 'router failed to start')
    process.exit(1)
  }
  installSignalHandlers(router, log)
  const listening: ListeningEvent = { event: 'listening', service: 'router', url: router.url }
  log.info({ ...listening, ...(router.peerUrl !== router.url ? { peerUrl: router.peerUrl } : {}), epoch: router.coordinator.epoch }, `router listening on ${router.url}`)
}

void main()
