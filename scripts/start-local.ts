import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { parseArgs } from 'node:util'
import { MapFile } from '../src/membership/map-file'
import { startLocalCluster, groupIds, type LocalCluster } from '../src/local/cluster'
import { stopAll, type LaunchedProcess } from '../src/local/launcher'
import { assertPortsFree, PortBusyError } from '../src/local/ports'

/**
 * `npm start`: the default local cluster — N shard nodes (groups g1..gN) and a router,
 * all on 127.0.0.1, data and logs under ./data. Data survives restarts: shard nodes
 * reopen their SQLite files and the router loads its persisted cluster map.
 */

const HOST = '127.0.0.1'

const HELP = `Usage: npm start -- [options]        (or: node dist/scripts/start-local.js [options])

Starts a local shardkv cluster on ${HOST}: one shard node per group (g1..gN, group i on
base-port + i - 1) and a router in front of them. Ctrl-C stops the router, then the shards.
Data stays in the data directory, so the next start serves the same keys.

Options:
  --data-dir DIR      data and logs (default ./data: ./data/g1, ./data/router, ./data/logs)
  --router-port N     router port (default 8080)
  --base-port N       first shard node port (default 7001)
  --groups N          number of shard groups (default 3)
  --replicas N        replica nodes per group (default 1; replica j of group i on base-port + 100*j + i - 1)
  --workers N         worker processes per shard node (default: available parallelism)
  --help              show this text`

interface StartOptions {
  dataDir: string
  routerPort: number
  basePort: number
  groups: number
  replicas: number
  workers: number | undefined
}

class UsageError extends Error {}

function intFlag (name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`)
  }
  return Number(raw)
}

function parseOptions (argv: string[]): StartOptions | 'help' {
  let values
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        'data-dir': { type: 'string' },
        'router-port': { type: 'string' },
        'base-port': { type: 'string' },
        groups: { type: 'string' },
        replicas: { type: 'string' },
        workers: { type: 'string' }
      }
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help === true) return 'help'
  const opts: StartOptions = {
    dataDir: resolve(values['data-dir'] ?? './data'),
    routerPort: intFlag('router-port', values['router-port'], 8080, 1, 65535),
    basePort: intFlag('base-port', values['base-port'], 7001, 1, 65535),
    groups: intFlag('groups', values.groups, 3, 1, 64),
    replicas: intFlag('replicas', values.replicas, 1, 0, 4),
    workers: values.workers === undefined ? undefined : intFlag('workers', values.workers, 1, 1, 256)
  }
  if (opts.groups > 100) throw new UsageError('--groups must be at most 100 (replica ports are base-port + 100*j)')
  if (opts.basePort + 100 * opts.replicas + opts.groups - 1 > 65535) throw new UsageError('--base-port + --groups runs past port 65535')
  const shardPorts = opts.basePort + opts.groups - 1
  if (opts.routerPort >= opts.basePort && opts.routerPort <= shardPorts) {
    throw new UsageError(`--router-port ${opts.routerPort} collides with the shard ports ${opts.basePort}-${shardPorts}`)
  }
  return opts
}

/** ./data/g1 when under the working directory (what the user typed), else absolute. */
function shown (path: string): string {
  const rel = relative(process.cwd(), path)
  if (rel === '') return '.'
  return rel.startsWith('..') || isAbsolute(rel) ? path : `.${sep}${rel}`
}

/**
 * A restart with other ports or groups cannot take effect: the router ignores --group
 * flags once it has a persisted map. Say so before the user wonders why.
 */
function warnIfMapDiffers (routerDir: string, planned: Map<string, string>): void {
  let map
  try {
    map = new MapFile(routerDir).load()
  } catch (err) {
    console.warn(`warning: cannot read the persisted cluster map in ${shown(routerDir)}: ${(err as Error).message}`)
    return
  }
  if (map === undefined) return
  const persisted = new Map(map.groups.map((g) => [g.id, g.nodes.find((n) => n.role === 'primary')?.url ?? '?']))
  const same = persisted.size === planned.size && [...planned].every(([id, url]) => persisted.get(id) === url)
  if (same) return
  console.warn(`warning: the router's persisted map (epoch ${map.epoch}) lists ${[...persisted].map(([id, url]) => `${id}=${url}`).join(', ')},`)
  console.warn(`         not the groups started now; the router keeps using its map. Remove ${shown(routerDir)} to start afresh.`)
}

function summary (cluster: LocalCluster, opts: StartOptions, logDir: string): string {
  const rows = [
    { name: 'router', url: cluster.router.url, data: cluster.routerDataDir },
    ...cluster.shards.flatMap((s) => [
      { name: s.group, url: s.process.url, data: s.dataDir },
      ...s.replicas.map((r) => ({ name: r.name, url: r.url, data: join(opts.dataDir, r.name) }))
    ])
  ]
  const urlWidth = Math.max(...rows.map((r) => r.url.length))
  const dataWidth = Math.max(...rows.map((r) => shown(r.data).length))
  const base = cluster.router.url
  return [
    `shardkv local cluster is up (${opts.groups} group${opts.groups === 1 ? '' : 's'}, a primary${opts.replicas === 0 ? '' : ` and ${opts.replicas} replica${opts.replicas === 1 ? '' : 's'}`} each)`,
    '',
    ...rows.map((r) => `  ${r.name.padEnd(8)} ${r.url.padEnd(urlWidth)}  data ${shown(r.data).padEnd(dataWidth)}  log ${shown(join(logDir, `${r.name}.log`))}`),
    '',
    'Try:',
    `  curl -i -X PUT -H 'content-type: text/plain' --data-binary 'hello' ${base}/kv/greeting`,
    `  curl -i ${base}/kv/greeting`,
    `  curl -s ${base}/cluster`,
    '',
    `Ctrl-C stops the router, then the shard nodes. Data stays in ${shown(opts.dataDir)}.`
  ].join('\n')
}

async function main (): Promise<number> {
  let opts: StartOptions | 'help'
  try {
    opts = parseOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`start-local: ${err.message}\n(see --help)`)
    return 2
  }
  if (opts === 'help') {
    console.log(HELP)
    return 0
  }

  const logDir = join(opts.dataDir, 'logs')
  const ids = groupIds(opts.groups)
  const planned = new Map(ids.map((id, i) => [id, `http://${HOST}:${opts.basePort + i}`]))
  warnIfMapDiffers(join(opts.dataDir, 'router'), planned)

  try {
    await assertPortsFree(HOST, [
      { name: 'router', port: opts.routerPort },
      ...ids.flatMap((id, i) => Array.from({ length: 1 + opts.replicas }, (_, j) => ({ name: j === 0 ? id : `${id}-r${j}`, port: opts.basePort + 100 * j + i })))
    ])
  } catch (err) {
    if (!(err instanceof PortBusyError)) throw err
    console.error(`start-local: ${err.message}.\nStop what uses ${err.busy.length === 1 ? 'it' : 'them'} (another \`npm start\`?) or choose other ports with --router-port / --base-port.`)
    return 1
  }

  // Children run in their own process group (detached) so Ctrl-C reaches only us and we
  // stop them in order; every launched child is tracked from the moment it is up.
  const launched: LaunchedProcess[] = []
  let stopping = false
  const shutdown = async (why: string): Promise<never> => {
    if (stopping) {
      // A second Ctrl-C: do not wait for draining. The launcher's exit hook SIGKILLs what is left.
      console.error('start-local: stopping now (killing what is left)')
      process.exit(1)
    }
    stopping = true
    console.log(`\n${why}: stopping the router, then the shard nodes...`)
    // Routers first by role; stopAll orders it.
    await stopAll(launched).catch((err: unknown) => console.error(`start-local: ${(err as Error).message}`))
    console.log(`stopped. Data kept in ${shown(opts.dataDir)}.`)
    process.exit(0)
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => { void shutdown(sig) })

  const nodes = opts.groups * (1 + opts.replicas)
  console.log(`starting ${nodes} shard node${nodes === 1 ? '' : 's'} (${opts.groups} group${opts.groups === 1 ? '' : 's'}) and a router (logs in ${shown(logDir)})...`)
  let cluster: LocalCluster
  try {
    cluster = await startLocalCluster({
      dataDir: opts.dataDir,
      groups: ids,
      host: HOST,
      basePort: opts.basePort,
      routerPort: opts.routerPort,
      workers: opts.workers,
      replicas: opts.replicas,
      logDir,
      detached: true,
      onLaunched: (p) => launched.push(p)
    })
  } catch (err) {
    if (stopping) return 0
    console.error(`start-local: the cluster did not start: ${(err as Error).message}`)
    await stopAll(launched).catch(() => undefined)
    return 1
  }
  console.log(summary(cluster, opts, logDir))

  // A child that dies on its own is reported, not hidden; the rest keep serving so the
  // user can look around. When nothing is left, there is nothing to wait for.
  let alive = launched.length
  for (const p of launched) {
    void p.exited.then((st) => {
      alive--
      if (stopping) return
      console.error(`start-local: ${p.name} (pid ${p.pid}) exited unexpectedly (code ${st.code}, signal ${st.signal}); see ${shown(join(logDir, `${p.name}.log`))}`)
      if (alive === 0) {
        console.error('start-local: no process is left running')
        process.exit(1)
      }
    })
  }
  // Runs until a signal: the children's pipes keep the event loop alive.
  return await new Promise<number>(() => {})
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error('start-local: unexpected error:', err)
  process.exitCode = 1
})
