import cluster from 'node:cluster'
import { ConfigError, loadConfig, SHARD_OPTIONS, usage, type ShardConfig } from '../src/config/options'
import { Supervisor } from './supervisor'
import { runWorker } from './worker'
import { WORKER_CONFIG_ENV } from './ipc'
import { loadPeerCredentials, type PeerCredentials } from '../src/auth/peer'

/** Entry point of a shard node: `node dist/shards/main.js [options]`. */
async function main (): Promise<void> {
  if (cluster.isPrimary) {
    if (process.argv.includes('--help')) {
      process.stdout.write(usage('node dist/shards/main.js', 'Start a shard node: a supervisor and N workers serving one SQLite partition.', SHARD_OPTIONS) + '\n')
      return
    }
    let config: ShardConfig
    let credentials: PeerCredentials
    try {
      config = loadConfig(SHARD_OPTIONS)
      credentials = loadPeerCredentials(config)
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`shardkv shard: ${err.message} (see --help)\n`)
        process.exit(2)
      }
      throw err
    }
    await new Supervisor(config, credentials).start()
  } else {
    const raw = process.env[WORKER_CONFIG_ENV]
    if (raw === undefined) throw new Error(`worker started without ${WORKER_CONFIG_ENV}`)
    await runWorker(JSON.parse(raw) as ShardConfig)
  }
}

main().catch((err: Error) => {
  process.stderr.write(JSON.stringify({ level: 'fatal', event: 'start-failed', pid: process.pid, err: { message: err.message, code: (err as { code?: string }).code, stack: err.stack } }) + '\n')
  process.exit(1)
})
