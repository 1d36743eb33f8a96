import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { credentialArgs, entryPoint } from '../src/local/launcher'
import { readLauncherState, processAlive, readNodeLaunch, readNodes } from '../src/local/nodes-file'
import { runScript, UsageError } from './cli'
import { nodeCredentials } from './auth'

const HELP = `Usage: npm run restart-node -- --data-dir DIR [options]

Starts a shard node again from its data directory, in the foreground, as it last ran
(host, port, peer port, group, workers, credentials and TLS files come from DIR/launch.json,
written whenever a node is started by npm start, add-shard or add-replica; without
recorded credentials it gets those of the cluster dir above DIR). It prints the equivalent
\`node dist/shards/main.js ...\` line, so the same works on any machine. A node that
was a primary and was replaced meanwhile learns it from the coordinator, resyncs from
the new primary and rejoins as a replica. Ctrl-C stops it.

A node that a running \`npm start\` owns is restarted by that launcher: this script
refuses it (if the launcher gave up on it, fix the cause and run npm start again).

Options:
  --data-dir DIR   the node's data directory (required)
  --port P         override the port (needed when DIR has no launch.json)
  --host H         override the address
  --workers N      override the worker count
  --help           this text`

/** The node's flags: as launch.json recorded them, overridden by the options given. */
function nodeArgs (dataDir: string, values: { port?: string | undefined, host?: string | undefined, workers?: string | undefined }): string[] {
  const launch = readNodeLaunch(dataDir)
  const port = values.port ?? (launch === undefined ? undefined : String(launch.port))
  if (port === undefined) throw new UsageError(`${dataDir} has no launch.json: say --port (and --group if it matters)`)
  const args = ['--data-dir', dataDir, '--port', port, '--host', values.host ?? launch?.host ?? '127.0.0.1']
  if (launch?.group !== undefined) args.push('--group', launch.group)
  const workers = values.workers ?? (launch?.workers === undefined ? undefined : String(launch.workers))
  if (workers !== undefined) args.push('--workers', workers)
  if (launch?.synchronous !== undefined) args.push('--synchronous', launch.synchronous)
  if (launch?.peerPort !== undefined) args.push('--peer-port', String(launch.peerPort))
  const creds = launch?.clusterSecretFile !== undefined && launch.tokensFile !== undefined
    ? { clusterSecretFile: launch.clusterSecretFile, tokensFile: launch.tokensFile, tlsCertFile: launch.tlsCertFile, tlsKeyFile: launch.tlsKeyFile, tlsCaFile: launch.tlsCaFile }
    : nodeCredentials(dirname(dataDir))
  args.push(...credentialArgs(creds))
  return args
}

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workers: { type: 'string' },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  if (values['data-dir'] === undefined) throw new UsageError('--data-dir is required (see --help)')
  const dataDir = resolve(values['data-dir'])
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) throw new UsageError(`${dataDir} is not a directory: a node whose disk is gone is replaced, not restarted (npm run replace-node)`)
  const owner = readLauncherState(dirname(dataDir))
  const entry = (readNodes(dirname(dataDir)) ?? []).find((n) => n.dataDir === dataDir)
  if (owner !== undefined && entry !== undefined && processAlive(owner.pid)) {
    throw new UsageError(`${entry.name} belongs to the local cluster whose launcher (pid ${owner.pid}) runs in ${dirname(dataDir)}; it restarts the node itself (state: ${owner.nodes[entry.name]?.state ?? 'unknown'})`)
  }
  const args = nodeArgs(dataDir, values)
  const script = entryPoint('shards')
  process.stderr.write(`restart-node: node ${script} ${args.join(' ')}\n`)
  const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' })
  // The child shares our terminal's process group, so Ctrl-C reaches it directly; forward a SIGTERM.
  process.on('SIGTERM', () => child.kill('SIGTERM'))
  process.on('SIGINT', () => { /* the node got it too and drains */ })
  return await new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128))))
}

runScript('restart-node', main)
