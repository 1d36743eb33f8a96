import cluster from 'node:cluster'
import { ConfigError, loadConfig, SHARD_OPTIONS, usage, type ShardConfig } from '../src/config/options'
import { parseRegistry, validateClusterName } from '../src/registry/registry-url'
import { protectedModeRefusal } from '../src/auth/protected-mode'
import { WORKER_CONFIG_ENV } from './ipc'
import { TokenStore } from '../src/auth/tokens'
import { loadListenerTls } from '../src/http/server'
import { loadPeerCredentials, type PeerCredentials } from '../src/auth/peer'

/**
 * Entry point of a shard node: `node dist/shards/main.js [options]`. The same file runs
 * a forked worker; each side loads only its own modules (a worker never needs the
 * supervisor's shipping and registry code).
 */
async function main (): Promise<void> {
  if (cluster.isPrimary) {
    if (process.argv.includes('--help')) {
      process.stdout.write(usage('node dist/shards/main.js', 'Start a shard node: a supervisor serving one SQLite partition itself, or through N workers.', SHARD_OPTIONS) + '\n')
      return
    }
    let config: ShardConfig
    let credentials: PeerCredentials
    try {
      config = loadConfig(SHARD_OPTIONS)
      credentials = loadPeerCredentials(config)
      try {
        parseRegistry(config.registry)
        validateClusterName(config.registryCluster)
      } catch (err) {
        throw new ConfigError((err as Error).message)
      }
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`shardkv shard: ${err.message} (see --help)\n`)
        process.exit(2)
      }
      throw err
    }
    // Checked by the supervisor, before anything forks and listens.
    const refusal = protectedModeRefusal({ host: config.host, hasSecret: config.clusterSecretFile !== '', hasTokens: config.tokensFile !== '', insecure: config.insecure })
    if (refusal !== undefined) {
      process.stderr.write(`shardkv shard: ${refusal}\n`)
      process.exit(1)
    }
    // Files the servers read: refused here, once, with the file's name, rather than by every worker.
    if (config.tokensFile !== '') new TokenStore(config.tokensFile)
    loadListenerTls(config.tlsCert, config.tlsKey)
    const { Supervisor } = await import('./supervisor')
    await new Supervisor(config, credentials).start()
  } else {
    const raw = process.env[WORKER_CONFIG_ENV]
    if (raw === undefined) throw new Error(`worker started without ${WORKER_CONFIG_ENV}`)
    const { runWorker } = await import('./worker')
    await runWorker(JSON.parse(raw) as ShardConfig)
  }
}

main().catch((err: Error) => {
  process.stderr.write(JSON.stringify({ level: 'fatal', event: 'start-failed', pid: process.pid, err: { message: err.message, code: (err as { code?: string }).code, stack: err.stack } }) + '\n')
  process.exit(1)
})
