import { parseArgs } from 'node:util'

/**
 * Declarative configuration: every setting of every process is one entry here with
 * its flag, environment variable, default and help. Flags win over environment
 * variables, which win over defaults. docs/configuration.md is generated from these
 * entries (npm run docs:config; a unit test keeps it in step).
 */

export type OptionKind = 'string' | 'integer' | 'boolean' | 'list'

export interface OptionSpec {
  flag: string
  env: string
  kind: OptionKind
  default: string | number | boolean | string[] | (() => number)
  help: string
  /** Allowed values for a string option. */
  choices?: readonly string[]
  min?: number
}

export type OptionTable = Record<string, OptionSpec>

type ValueOf<S extends OptionSpec> =
  S['kind'] extends 'integer' ? number
    : S['kind'] extends 'boolean' ? boolean
      : S['kind'] extends 'list' ? string[]
        : string

export type Config<T extends OptionTable> = { [K in keyof T]: ValueOf<T[K]> }

export class ConfigError extends Error {
  readonly code = 'ERR_SHARDKV_CONFIG'
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export const MIB = 1024 * 1024

/**
 * The credentials and TLS files, and protected mode: the same for routers and shard
 * nodes (a cluster shares one secret and one tokens file; see docs/security.md).
 */
const CREDENTIAL_OPTIONS = {
  clusterSecretFile: { flag: 'cluster-secret-file', env: 'SHARDKV_CLUSTER_SECRET_FILE', kind: 'string', default: '', help: 'File holding the cluster secret every peer request must carry (routers, coordinator, shard nodes share it). Empty: peers are not authenticated (loopback only).' },
  peerTlsCert: { flag: 'peer-tls-cert', env: 'SHARDKV_PEER_TLS_CERT', kind: 'string', default: '', help: 'PEM certificate of this process on the peer listener and toward other peers (mutual TLS; needs --peer-tls-key and --peer-tls-ca).' },
  peerTlsKey: { flag: 'peer-tls-key', env: 'SHARDKV_PEER_TLS_KEY', kind: 'string', default: '', help: 'PEM private key for --peer-tls-cert.' },
  peerTlsCa: { flag: 'peer-tls-ca', env: 'SHARDKV_PEER_TLS_CA', kind: 'string', default: '', help: 'PEM CA bundle peers\' certificates must chain to (both directions).' },
  tokensFile: { flag: 'tokens-file', env: 'SHARDKV_TOKENS_FILE', kind: 'string', default: '', help: 'Client tokens file (hashes, roles, key prefixes; see docs/security.md), reloaded on SIGHUP. Empty: clients are not authenticated (loopback only).' },
  tlsCert: { flag: 'tls-cert', env: 'SHARDKV_TLS_CERT', kind: 'string', default: '', help: 'PEM certificate for the client (data) listener: serve HTTPS (needs --tls-key).' },
  tlsKey: { flag: 'tls-key', env: 'SHARDKV_TLS_KEY', kind: 'string', default: '', help: 'PEM private key for --tls-cert.' },
  insecure: { flag: 'insecure', env: 'SHARDKV_INSECURE', kind: 'boolean', default: false, help: 'Allow listening on a non-loopback address without a cluster secret and tokens file (protected mode off).' },
} as const satisfies OptionTable

export const SHARD_OPTIONS = {
  host: { flag: 'host', env: 'SHARDKV_SHARD_HOST', kind: 'string', default: '127.0.0.1', help: 'Address the shard node listens on.' },
  port: { flag: 'port', env: 'SHARDKV_SHARD_PORT', kind: 'integer', default: 7001, min: 0, help: 'TCP port (0 picks a free one and logs it).' },
  dataDir: { flag: 'data-dir', env: 'SHARDKV_SHARD_DATA_DIR', kind: 'string', default: './data/shard', help: 'Directory holding the node\'s SQLite file (shard.db).' },
  nodeId: { flag: 'node-id', env: 'SHARDKV_NODE_ID', kind: 'string', default: '', help: 'Stable node name; generated and stored in the database when empty.' },
  group: { flag: 'group', env: 'SHARDKV_GROUP', kind: 'string', default: '', help: 'Shard group this node belongs to (informational until the coordinator installs a map).' },
  workers: { flag: 'workers', env: 'SHARDKV_WORKERS', kind: 'integer', default: 0, min: 0, help: 'Worker processes serving the data API. 0: the node serves it in its own process, one SQLite writer for all its writes (see docs/architecture.md). N: N forked workers, replaced when they die and one at a time on SIGUSR2.' },
  synchronous: { flag: 'synchronous', env: 'SHARDKV_SYNCHRONOUS', kind: 'string', default: 'FULL', choices: ['OFF', 'NORMAL', 'FULL', 'EXTRA'], help: 'SQLite synchronous level. FULL survives power loss; NORMAL survives process crashes only.' },
  busyTimeoutMs: { flag: 'busy-timeout-ms', env: 'SHARDKV_BUSY_TIMEOUT_MS', kind: 'integer', default: 5000, min: 0, help: 'How long a write waits for the SQLite write lock held by another worker.' },
  maxValueBytes: { flag: 'max-value-bytes', env: 'SHARDKV_MAX_VALUE_BYTES', kind: 'integer', default: MIB, min: 1, help: 'Largest value accepted (larger is 413).' },
  groupCommitMaxOps: { flag: 'group-commit-max-ops', env: 'SHARDKV_GROUP_COMMIT_MAX_OPS', kind: 'integer', default: 256, min: 1, help: 'Most concurrent writes of a node (of each worker, with --workers N) coalesced into one transaction (one fsync); 1 commits each write alone.' },
  maxBatchOps: { flag: 'max-batch-ops', env: 'SHARDKV_MAX_BATCH_OPS', kind: 'integer', default: 1000, min: 1, help: 'Most operations in one POST /batch.' },
  maxBatchBytes: { flag: 'max-batch-bytes', env: 'SHARDKV_MAX_BATCH_BYTES', kind: 'integer', default: 16 * MIB, min: 1024, help: 'Largest POST /batch body (JSON, values base64-encoded).' },
  headersTimeoutMs: { flag: 'headers-timeout-ms', env: 'SHARDKV_HEADERS_TIMEOUT_MS', kind: 'integer', default: 10_000, min: 100, help: 'A client must send its request headers within this (else 408 and the connection is closed).' },
  requestTimeoutMs: { flag: 'request-timeout-ms', env: 'SHARDKV_REQUEST_TIMEOUT_MS', kind: 'integer', default: 30_000, min: 100, help: 'A client must send its whole request, body included, within this (else 408 and the connection is closed).' },
  idleTimeoutMs: { flag: 'idle-timeout-ms', env: 'SHARDKV_IDLE_TIMEOUT_MS', kind: 'integer', default: 65_000, min: 100, help: 'A kept-alive connection with no request in flight is closed after this.' },
  maxConnections: { flag: 'max-connections', env: 'SHARDKV_MAX_CONNECTIONS', kind: 'integer', default: 4096, min: 1, help: 'Most client connections one process holds open (each shard worker, the router); further ones are closed at once.' },
  replicaTimeoutMs: { flag: 'replica-timeout-ms', env: 'SHARDKV_REPLICA_TIMEOUT_MS', kind: 'integer', default: 1000, min: 50, help: 'A primary asks the coordinator to drop a replica from the in-sync set after it has failed this long.' },
  ackTimeoutMs: { flag: 'ack-timeout-ms', env: 'SHARDKV_ACK_TIMEOUT_MS', kind: 'integer', default: 5000, min: 50, help: 'How long a write waits for its replication before it is answered 503 (outcome unknown).' },
  requestIdWindowMs: { flag: 'request-id-window-ms', env: 'SHARDKV_REQUEST_ID_WINDOW_MS', kind: 'integer', default: 600_000, min: 1000, help: 'How long a write\'s request id is remembered, so a retry of it is answered instead of applied again; older ids are refused (request_id_expired).' },
  requestIdMax: { flag: 'request-id-max', env: 'SHARDKV_REQUEST_ID_MAX', kind: 'integer', default: 1_000_000, min: 1000, help: 'Most request ids a node remembers; past it the oldest are forgotten first (and refused like expired ones).' },
  watchRetentionSeconds: { flag: 'watch-retention-seconds', env: 'SHARDKV_WATCH_RETENTION_SECONDS', kind: 'integer', default: 600, min: 1, help: 'How long the change feed keeps every change for watch streams; a watch cursor older than that is answered cursor_compacted.' },
  replicationBatch: { flag: 'replication-batch', env: 'SHARDKV_REPLICATION_BATCH', kind: 'integer', default: 500, min: 1, help: 'Rows per replication shipment.' },
  replicationWindow: { flag: 'replication-window', env: 'SHARDKV_REPLICATION_WINDOW', kind: 'integer', default: 4, min: 1, help: 'Replication shipments in flight per replica (pipelined on one connection): the replica commits one while the next is on its way; 1 waits for each answer before the next send.' },
  shutdownTimeoutMs: { flag: 'shutdown-timeout-ms', env: 'SHARDKV_SHUTDOWN_TIMEOUT_MS', kind: 'integer', default: 10000, min: 0, help: 'How long a draining node may take to finish its requests (SIGTERM; a worker, also on SIGUSR2) before it stops waiting (a worker is killed).' },
  peerPort: { flag: 'peer-port', env: 'SHARDKV_PEER_PORT', kind: 'integer', default: -1, min: -1, help: 'TCP port of the peer listener serving the internal API (map installs, replication, migration) apart from the data port; -1 serves it on the data port (still authenticated), 0 picks a free one.' },
  registry: { flag: 'registry', env: 'SHARDKV_REGISTRY', kind: 'string', default: 'file', help: 'etcd://host:port[,host:port...]: register this node (id, group, data and peer URLs) in that etcd under a lease while it runs; file (the default): no registration.' },
  registryCluster: { flag: 'registry-cluster', env: 'SHARDKV_REGISTRY_CLUSTER', kind: 'string', default: 'shardkv', help: 'The cluster\'s name in the registry (etcd keys under /shardkv/<name>/).' },
  registryTtlSeconds: { flag: 'registry-ttl-seconds', env: 'SHARDKV_REGISTRY_TTL_SECONDS', kind: 'integer', default: 5, min: 1, help: 'Lease of the node\'s registration: a node that dies leaves the registry within this.' },
  advertiseUrl: { flag: 'advertise-url', env: 'SHARDKV_SHARD_ADVERTISE_URL', kind: 'string', default: '', help: 'etcd registry: the data URL the node registers under (its peer listener on that host), when not the one it listens on (--host 0.0.0.0, a container, a pod).' },
  ...CREDENTIAL_OPTIONS,
  logLevel: { flag: 'log-level', env: 'SHARDKV_LOG_LEVEL', kind: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], help: 'pino log level.' }
} as const satisfies OptionTable

/** The listener limits of the router and the coordinator (shard nodes have their own, per process). */
const LISTENER_OPTIONS = {
  headersTimeoutMs: { flag: 'headers-timeout-ms', env: 'SHARDKV_HEADERS_TIMEOUT_MS', kind: 'integer', default: 10_000, min: 100, help: 'A client must send its request headers within this (else 408 and the connection is closed).' },
  requestTimeoutMs: { flag: 'request-timeout-ms', env: 'SHARDKV_REQUEST_TIMEOUT_MS', kind: 'integer', default: 30_000, min: 100, help: 'A client must send its whole request, body included, within this (else 408 and the connection is closed).' },
  idleTimeoutMs: { flag: 'idle-timeout-ms', env: 'SHARDKV_IDLE_TIMEOUT_MS', kind: 'integer', default: 65_000, min: 100, help: 'A kept-alive connection with no request in flight is closed after this.' },
  maxConnections: { flag: 'max-connections', env: 'SHARDKV_MAX_CONNECTIONS', kind: 'integer', default: 4096, min: 1, help: 'Most client connections one process holds open (each shard worker, the router); further ones are closed at once.' },
} as const satisfies OptionTable

/** Who may call a router or a coordinator, how often, and what it logs. */
const FRONT_DOOR_OPTIONS = {
  ...CREDENTIAL_OPTIONS,
  rateLimitPerToken: { flag: 'rate-limit-per-token', env: 'SHARDKV_RATE_LIMIT_PER_TOKEN', kind: 'integer', default: 0, min: 0, help: 'Most requests one client token may make per --rate-limit-window-ms (429 + Retry-After past it); 0: no limit.' },
  rateLimitPerIp: { flag: 'rate-limit-per-ip', env: 'SHARDKV_RATE_LIMIT_PER_IP', kind: 'integer', default: 0, min: 0, help: 'Most requests one client address may make per --rate-limit-window-ms (429 + Retry-After past it); 0: no limit.' },
  rateLimitWindowMs: { flag: 'rate-limit-window-ms', env: 'SHARDKV_RATE_LIMIT_WINDOW_MS', kind: 'integer', default: 1000, min: 100, help: 'The window the rate limits count in.' },
  logLevel: { flag: 'log-level', env: 'SHARDKV_LOG_LEVEL', kind: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], help: 'pino log level.' }
} as const satisfies OptionTable

export const ROUTER_OPTIONS = {
  host: { flag: 'host', env: 'SHARDKV_ROUTER_HOST', kind: 'string', default: '127.0.0.1', help: 'Address the router listens on.' },
  port: { flag: 'port', env: 'SHARDKV_ROUTER_PORT', kind: 'integer', default: 8080, min: 0, help: 'TCP port (0 picks a free one and logs it).' },
  coordinator: { flag: 'coordinator', env: 'SHARDKV_COORDINATOR', kind: 'string', default: '', help: 'URL of the coordinator whose map this router follows, and to which it relays the admin API, GET /cluster and the dashboard (file registry).' },
  registry: { flag: 'registry', env: 'SHARDKV_REGISTRY', kind: 'string', default: 'file', help: 'etcd://host:port[,host:port...]: follow the map in that etcd (a watch) and relay admin calls to the leading coordinator, instead of --coordinator; file (the default): follow --coordinator.' },
  registryCluster: { flag: 'registry-cluster', env: 'SHARDKV_REGISTRY_CLUSTER', kind: 'string', default: 'shardkv', help: 'The cluster\'s name in the registry (etcd keys under /shardkv/<name>/).' },
  registryTtlSeconds: { flag: 'registry-ttl-seconds', env: 'SHARDKV_REGISTRY_TTL_SECONDS', kind: 'integer', default: 5, min: 1, help: 'etcd registry: lease of the router\'s registration (coordinators list live routers from it): a router that dies leaves the registry within this.' },
  advertiseUrl: { flag: 'advertise-url', env: 'SHARDKV_ROUTER_ADVERTISE_URL', kind: 'string', default: '', help: 'etcd registry: the URL the router registers under (the coordinator reads its metrics there), when not the one it listens on.' },
  maxValueBytes: { flag: 'max-value-bytes', env: 'SHARDKV_MAX_VALUE_BYTES', kind: 'integer', default: MIB, min: 0, help: 'Largest value accepted (larger is 413).' },
  maxBatchOps: { flag: 'max-batch-ops', env: 'SHARDKV_MAX_BATCH_OPS', kind: 'integer', default: 1000, min: 1, help: 'Most operations in one POST /batch.' },
  maxBatchBytes: { flag: 'max-batch-bytes', env: 'SHARDKV_MAX_BATCH_BYTES', kind: 'integer', default: 16 * MIB, min: 1024, help: 'Largest POST /batch body (JSON, values base64-encoded).' },
  retryTimeoutMs: { flag: 'retry-timeout-ms', env: 'SHARDKV_RETRY_TIMEOUT_MS', kind: 'integer', default: 3000, min: 0, help: 'How long the router keeps retrying a request whose shard connection was refused or reset.' },
  upstreamTimeoutMs: { flag: 'upstream-timeout-ms', env: 'SHARDKV_UPSTREAM_TIMEOUT_MS', kind: 'integer', default: 6000, min: 1, help: 'Longest wait for a shard\'s response headers.' },
  readCoalesceMaxKeys: { flag: 'read-coalesce-max-keys', env: 'SHARDKV_READ_COALESCE_MAX_KEYS', kind: 'integer', default: 64, min: 1, help: 'Most concurrent GETs for one primary the router sends upstream as one batch (keep it at most the nodes\' --max-batch-ops); 1 sends every GET alone.' },
  writeCoalesceMaxKeys: { flag: 'write-coalesce-max-keys', env: 'SHARDKV_WRITE_COALESCE_MAX_KEYS', kind: 'integer', default: 64, min: 1, help: 'Most concurrent unconditional PUTs and DELETEs for one primary the router sends upstream as one batch, each op carrying its request id (keep it at most the nodes\' --max-batch-ops); 1 sends every write alone.' },
  coalesceInFlight: { flag: 'coalesce-in-flight', env: 'SHARDKV_COALESCE_IN_FLIGHT', kind: 'integer', default: 1, min: 0, help: 'Most coalesced batches of GETs (and, apart, of each client\'s writes) in flight to one primary; requests for a primary at its limit wait for one to end and go in the next batch, so a busy primary gets fewer, larger batches. 0: no limit (every turn\'s batch is sent at once).' },
  connections: { flag: 'connections', env: 'SHARDKV_UPSTREAM_CONNECTIONS', kind: 'integer', default: 64, min: 1, help: 'Kept-alive connections per shard node in the router\'s undici pool.' },
  watchMaxStreamsPerToken: { flag: 'watch-max-streams-per-token', env: 'SHARDKV_WATCH_MAX_STREAMS_PER_TOKEN', kind: 'integer', default: 32, min: 1, help: 'Most open GET /watch streams one client token (without tokens: all clients together) may hold on this router; past it 429 too_many_streams.' },
  watchStreamBufferBytes: { flag: 'watch-stream-buffer-bytes', env: 'SHARDKV_WATCH_STREAM_BUFFER_BYTES', kind: 'integer', default: 256 * 1024, min: 1024, help: 'Bytes of events (values included) one watch stream may have waiting for a slow client; a client that leaves more than this untaken for 10 s gets stream_overflow (resume from the last id).' },
  ...LISTENER_OPTIONS,
  ...FRONT_DOOR_OPTIONS
} as const satisfies OptionTable

export const COORDINATOR_OPTIONS = {
  host: { flag: 'host', env: 'SHARDKV_COORDINATOR_HOST', kind: 'string', default: '127.0.0.1', help: 'Address the coordinator listens on.' },
  port: { flag: 'port', env: 'SHARDKV_COORDINATOR_PORT', kind: 'integer', default: 8090, min: 0, help: 'TCP port of the admin API and the cluster view (0 picks a free one and logs it).' },
  peerPort: { flag: 'peer-port', env: 'SHARDKV_COORDINATOR_PEER_PORT', kind: 'integer', default: -1, min: -1, help: 'TCP port of the coordinator\'s peer listener (routers following the map, replicas\' in-sync requests); -1 serves it on the client port (still authenticated), 0 picks a free one.' },
  advertiseUrl: { flag: 'advertise-url', env: 'SHARDKV_COORDINATOR_ADVERTISE_URL', kind: 'string', default: '', help: 'The peer URL nodes and routers reach this coordinator at, when not the one it listens on (another machine, a container, a Service).' },
  dataDir: { flag: 'data-dir', env: 'SHARDKV_COORDINATOR_DATA_DIR', kind: 'string', default: './data/coordinator', help: 'Directory holding the persisted cluster map (cluster.json) with the file registry.' },
  registry: { flag: 'registry', env: 'SHARDKV_REGISTRY', kind: 'string', default: 'file', help: 'Where the map lives: file (the default, in --data-dir; one coordinator) or etcd://host:port[,host:port...] (coordinators campaign for one leader key; only the leader acts, the others stand by).' },
  registryCluster: { flag: 'registry-cluster', env: 'SHARDKV_REGISTRY_CLUSTER', kind: 'string', default: 'shardkv', help: 'The cluster\'s name in the registry (etcd keys under /shardkv/<name>/).' },
  leaderTtlSeconds: { flag: 'leader-ttl-seconds', env: 'SHARDKV_LEADER_TTL_SECONDS', kind: 'integer', default: 5, min: 2, help: 'etcd registry: the lease of the leader key. A leader cut off from etcd stops acting a third of it before the lease ends; a rival leads after it ends.' },
  groups: { flag: 'group', env: 'SHARDKV_GROUPS', kind: 'list', default: [], help: 'Initial groups as id=url[@weight], repeatable (env: comma-separated). Used only when no map is persisted yet.' },
  vnodes: { flag: 'vnodes', env: 'SHARDKV_VNODES', kind: 'integer', default: 2048, min: 1, help: 'Ring points per unit of group weight (stored with the map; fixed once the map exists).' },
  rebalanceBatch: { flag: 'rebalance-batch', env: 'SHARDKV_REBALANCE_BATCH', kind: 'integer', default: 500, min: 1, help: 'Rows per migration batch (scan, copy, purge).' },
  rebalanceMibPerSec: { flag: 'rebalance-mib-per-sec', env: 'SHARDKV_REBALANCE_MIB_PER_SEC', kind: 'integer', default: 16, min: 0, help: 'Throttle on the data a rebalance moves, in MiB of keys and values per second, to bound client latency (0: no byte limit).' },
  rebalanceRowsPerSec: { flag: 'rebalance-rows-per-sec', env: 'SHARDKV_REBALANCE_ROWS_PER_SEC', kind: 'integer', default: 0, min: 0, help: 'An optional second throttle, on rows per second copied or purged during a rebalance (for many tiny rows; 0: no row limit).' },
  healthIntervalMs: { flag: 'health-interval-ms', env: 'SHARDKV_HEALTH_INTERVAL_MS', kind: 'integer', default: 500, min: 50, help: 'How often the coordinator checks every node\'s /healthz (leases are renewed on their own clock: see --lease-ms).' },
  leaseMs: { flag: 'lease-ms', env: 'SHARDKV_LEASE_MS', kind: 'integer', default: 800, min: 100, help: 'How long a primary with replicas may serve after its last lease renewal; renewed four times per lease. A dead primary is replaced just after its last lease ends: this bounds the failover time. Lower it only with the coordinator stopped for longer than the old lease (a restarted coordinator counts its predecessor\'s grants at the new length).' },
  failoverAfter: { flag: 'failover-after', env: 'SHARDKV_FAILOVER_AFTER', kind: 'integer', default: 3, min: 1, help: 'Lease renewals in a row a primary may leave unanswered (timeouts: frozen or cut off) before the coordinator stops renewing and lets its lease run out, then replaces it. One that refuses connections is replaced as soon as its lease has ended.' },
  retryTimeoutMs: { flag: 'retry-timeout-ms', env: 'SHARDKV_RETRY_TIMEOUT_MS', kind: 'integer', default: 3000, min: 0, help: 'The routers\' retry budget: a switchover gives up within half of it, so clients\' writes wait rather than fail.' },
  ...LISTENER_OPTIONS,
  ...FRONT_DOOR_OPTIONS
} as const satisfies OptionTable

/**
 * Splits command-line flags between two processes by which option table knows each
 * (`--flag value`, `--flag=value`, or a boolean `--flag`); a flag both know goes to both,
 * one neither knows to the first (which refuses it with its usual message).
 */
export function splitFlags (args: readonly string[], first: OptionTable, second: OptionTable): { first: string[], second: string[] } {
  const specOf = (table: OptionTable, flag: string): OptionSpec | undefined => Object.values(table).find((s) => s.flag === flag)
  const out = { first: [] as string[], second: [] as string[] }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0] as string : ''
    const a = specOf(first, name)
    const b = specOf(second, name)
    const spec = a ?? b
    const takesValue = spec !== undefined && spec.kind !== 'boolean' && !arg.includes('=') && i + 1 < args.length
    const chunk = takesValue ? [arg, args[++i] as string] : [arg]
    if (a !== undefined || b === undefined) out.first.push(...chunk)
    if (b !== undefined) out.second.push(...chunk)
  }
  return out
}

function convert (spec: OptionSpec, raw: string | string[], source: string): string | number | boolean | string[] {
  switch (spec.kind) {
    case 'integer': {
      const text = Array.isArray(raw) ? raw[raw.length - 1] ?? '' : raw
      if (!/^-?\d+$/.test(text.trim())) throw new ConfigError(`${source} must be an integer, got "${text}"`)
      const n = Number(text)
      if (spec.min !== undefined && n < spec.min) throw new ConfigError(`${source} must be at least ${spec.min}, got ${n}`)
      return n
    }
    case 'boolean': {
      const text = String(Array.isArray(raw) ? raw[raw.length - 1] : raw).toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(text)) return true
      if (['0', 'false', 'no', 'off', ''].includes(text)) return false
      throw new ConfigError(`${source} must be true or false, got "${text}"`)
    }
    case 'list':
      return (Array.isArray(raw) ? raw : [raw]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '')
    case 'string': {
      const text = Array.isArray(raw) ? raw[raw.length - 1] ?? '' : raw
      if (spec.choices !== undefined) {
        const upper = spec.choices.find((c) => c.toLowerCase() === text.toLowerCase())
        if (upper === undefined) throw new ConfigError(`${source} must be one of ${spec.choices.join(', ')}, got "${text}"`)
        return upper
      }
      return text
    }
  }
}

/** Resolves a configuration from argv and env against a table. Throws ConfigError. */
export function loadConfig<T extends OptionTable> (
  table: T,
  argv: readonly string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env
): Config<T> {
  const parseOptions: Record<string, { type: 'string' | 'boolean', multiple?: boolean }> = {}
  for (const spec of Object.values(table)) {
    parseOptions[spec.flag] = spec.kind === 'boolean'
      ? { type: 'boolean' }
      : { type: 'string', multiple: spec.kind === 'list' }
  }
  let values: Record<string, string | boolean | Array<string | boolean> | undefined>
  try {
    values = parseArgs({ args: [...argv], options: parseOptions, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new ConfigError((err as Error).message)
  }
  const out: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(table)) {
    const fromFlag = values[spec.flag]
    if (fromFlag !== undefined) {
      out[name] = typeof fromFlag === 'boolean' ? fromFlag : convert(spec, fromFlag as string | string[], `--${spec.flag}`)
      continue
    }
    const fromEnv = env[spec.env]
    if (fromEnv !== undefined && fromEnv !== '') {
      out[name] = convert(spec, fromEnv, spec.env)
      continue
    }
    out[name] = typeof spec.default === 'function' ? spec.default() : spec.default
  }
  return out as Config<T>
}

/** `--help` text for a table. */
export function usage (command: string, summary: string, table: OptionTable): string {
  const lines = [`Usage: ${command} [options]`, '', summary, '', 'Options (flag / environment variable, default):']
  for (const spec of Object.values(table)) {
    const def = typeof spec.default === 'function' ? 'computed' : JSON.stringify(spec.default)
    lines.push(`  --${spec.flag.padEnd(22)} ${spec.env}  (default ${def})`)
    lines.push(`      ${spec.help}`)
  }
  lines.push('  --help                   Show this text.')
  return lines.join('\n')
}

export type ShardConfig = Config<typeof SHARD_OPTIONS>
export type RouterConfig = Config<typeof ROUTER_OPTIONS>
export type CoordinatorConfig = Config<typeof COORDINATOR_OPTIONS>
