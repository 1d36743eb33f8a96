/**
 * Messages between a shard node's supervisor (cluster primary) and its workers.
 * Every message carries `type` prefixed with `shardkv:` so that prom-client's own
 * cluster messages pass through untouched.
 */
export type SupervisorMessage =
  | { type: 'shardkv:drain' }
  | { type: 'shardkv:workers', pids: number[] }
  | { type: 'shardkv:metrics-reply', id: number, text: string, error?: string }
  /** The highest seq every replica in the ack set has durably applied. */
  | { type: 'shardkv:replicated', position: number }
  /** SIGHUP reached the supervisor: re-read the tokens file. */
  | { type: 'shardkv:reload-tokens' }

export type WorkerMessage =
  | { type: 'shardkv:metrics-request', id: number }
  /** A write committed at `seq` waits for replication: ship it now. */
  | { type: 'shardkv:committed', seq: number }
  /** A map was installed: replication roles may have changed. */
  | { type: 'shardkv:map-installed', epoch: number }

export function isShardMessage (msg: unknown): msg is { type: string } {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string' &&
    (msg as { type: string }).type.startsWith('shardkv:')
}

/** The resolved configuration is handed to workers so they never re-parse flags. */
export const WORKER_CONFIG_ENV = 'SHARDKV_WORKER_CONFIG'
