import { resolve } from 'node:path'
import { QUICK_START_SHAPE } from '../src/local/quick-start'
import { PROCESS_RESTART_POLICY } from '../src/supervision/restart-policy'
import { intFlag, parseFlags, UsageError } from '../src/config/cli-flags'
import { parseEtcdFlag, MAX_CONTROL_PROCESSES, type ShapeFlags } from '../src/local/control-shape'

/** `npm start`'s flags (scripts/start-local.ts): its help text, and its options parsed and checked. */

export { UsageError }

/** Where every process of the local cluster listens. */
export const HOST = '127.0.0.1'

/** The help text; `usage` is how the command is invoked (npm start --, shardkv start). */
export const help = (usage: string): string => `Usage: ${usage} [options]        (or: node dist/scripts/start-local.js [options])

Starts a local shardkv cluster on ${HOST}: one shard node per group (g1..gN, group i on
base-port + i - 1), a coordinator (router port + 10) and a router in front of them. A
process that exits unexpectedly is restarted from its data directory (back-off; given up
after a crash loop). Nodes added with add-shard / add-replica run under this launcher too.
Ctrl-C stops the router, the coordinator, then the shards. Data stays in the data directory, so the next start serves the
same keys and runs the same nodes (listed in <data-dir>/nodes.json, written on the first
start from --groups, --replicas and --workers). Each process also gets a peer port for
the internal API (its port + 10000; kept in nodes.json).

Secure by default: the first start creates <data-dir>/cluster-secret (what the processes
authenticate each other with), <data-dir>/tokens.json (client tokens, hashes only; every part
re-reads it within a second of an edit) and an admin token, printed once and kept in
<data-dir>/admin-token (mode 0600). Send it as \`Authorization: Bearer <token>\`; the scripts
(add-shard, ...) read it from there.

Options:
  --data-dir DIR      data and logs (default ./data: ./data/g1, ./data/coordinator, ./data/logs)
  --router-port N     router port (default 8080)
  --base-port N       first shard node port (default 7001)
  --groups N          number of shard groups (default ${QUICK_START_SHAPE.groups}; first start only)
  --replicas N        replica nodes per group (default ${QUICK_START_SHAPE.replicas}; first start only; replica j of group i
                      on base-port + 100*j + i - 1)
  --workers N         worker processes per shard node (default 0: each node serves in its own process;
                      first start only)
  --restart-delay-ms N  wait before restarting a process that died (default 500; later crashes back
                      off 1, 2, 4, 8 s; the 6th within two minutes gives up). Longer than a failover
                      (about 3 s) makes a killed primary always come back as a replica.
  --tls               HTTPS on every listener and mutual TLS between the processes, with a CA
                      and certificate made by openssl in <data-dir>/tls on the first start
                      (clients trust <data-dir>/tls/ca.pem); kept on every later start
  --insecure          start without the cluster secret and tokens file (anyone on this machine
                      can use the cluster; for comparisons and benchmarks)
  --processes         run the router and the coordinator as processes of their own (default: as
                      threads of this launcher, which saves two Node processes' memory; a process
                      can be signalled and killed on its own; file registry only; see
                      docs/operations.md)

The control plane on etcd (kept in <data-dir>/control-plane.json: a later start without these
flags runs the same shape):
  --registry etcd     keep the map in etcd: coordinators campaign for its leader key (one leads,
                      the others stand by), routers and nodes find it there. Without --etcd, three
                      etcd members run here (the etcd binary, Debian's etcd-server) on router
                      port + 100..105, data in <data-dir>/etcd/e0..e2, stopped last
  --etcd URL[,URL]    use this etcd instead (its client URLs; implies --registry etcd)
  --coordinators N    coordinators (default 2; coordinator i on router port + 10 + i - 1, data in
                      <data-dir>/coordinator-i)
  --routers N         routers (default 1; router j on router port + j - 1)
  --registry file     the default: the map in <data-dir>/coordinator, one coordinator, one router

  --help              show this text`

export interface StartOptions {
  dataDir: string
  routerPort: number
  basePort: number
  groups: number
  replicas: number
  workers: number | undefined
  restartDelayMs: number
  insecure: boolean
  tls: boolean
  /** --processes: the router and the coordinator as processes, not threads of the launcher. */
  processes: boolean
  /** What the flags say about the control plane (decided against the data dir in prepare). */
  shape: ShapeFlags
}


export function parseOptions (argv: string[]): StartOptions | 'help' {
  const values = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    'data-dir': { type: 'string' },
    'router-port': { type: 'string' },
    'base-port': { type: 'string' },
    groups: { type: 'string' },
    replicas: { type: 'string' },
    workers: { type: 'string' },
    'restart-delay-ms': { type: 'string' },
    insecure: { type: 'boolean' },
    tls: { type: 'boolean' },
    processes: { type: 'boolean' },
    registry: { type: 'string' },
    etcd: { type: 'string' },
    coordinators: { type: 'string' },
    routers: { type: 'string' }
  })
  if (values.help === true) return 'help'
  const opts: StartOptions = {
    dataDir: resolve(values['data-dir'] ?? './data'),
    routerPort: intFlag('router-port', values['router-port'], 8080, 1, 65525),
    basePort: intFlag('base-port', values['base-port'], 7001, 1, 65535),
    groups: intFlag('groups', values.groups, QUICK_START_SHAPE.groups, 1, 64),
    replicas: intFlag('replicas', values.replicas, QUICK_START_SHAPE.replicas, 0, 4),
    workers: values.workers === undefined ? undefined : intFlag('workers', values.workers, 0, 0, 256),
    restartDelayMs: intFlag('restart-delay-ms', values['restart-delay-ms'], PROCESS_RESTART_POLICY.firstDelayMs, 0, 600_000),
    insecure: values.insecure === true,
    tls: values.tls === true,
    processes: values.processes === true,
    shape: shapeFlags(values)
  }
  // Peer mutual TLS without the secret would be half a trust boundary; --insecure means none.
  if (opts.tls && opts.insecure) throw new UsageError('--tls and --insecure do not go together')
  if (opts.groups > 100) throw new UsageError('--groups must be at most 100 (replica ports are base-port + 100*j)')
  if (opts.basePort + 100 * opts.replicas + opts.groups - 1 > 65535) throw new UsageError('--base-port + --groups runs past port 65535')
  const shardPorts = opts.basePort + opts.groups - 1
  if (opts.routerPort >= opts.basePort && opts.routerPort <= shardPorts) {
    throw new UsageError(`--router-port ${opts.routerPort} collides with the shard ports ${opts.basePort}-${shardPorts}`)
  }
  return opts
}

function shapeFlags (values: { registry?: string, etcd?: string, coordinators?: string, routers?: string }): ShapeFlags {
  const { registry, etcd, coordinators, routers } = values
  if (registry !== undefined && registry !== 'file' && registry !== 'etcd') throw new UsageError(`--registry must be file or etcd, got "${registry}"`)
  let endpoints: string[] | undefined
  try {
    endpoints = etcd === undefined ? undefined : parseEtcdFlag(etcd)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  return {
    ...(registry === undefined ? {} : { registry }),
    ...(endpoints === undefined ? {} : { etcd: endpoints }),
    ...(coordinators === undefined ? {} : { coordinators: intFlag('coordinators', coordinators, 0, 1, MAX_CONTROL_PROCESSES) }),
    ...(routers === undefined ? {} : { routers: intFlag('routers', routers, 0, 1, MAX_CONTROL_PROCESSES) })
  }
}
