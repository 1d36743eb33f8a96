import type { NodeStats } from '../src/protocol/node-answers'
import { Agent, request } from 'undici'
import { HEALTH_PATH, INTERNAL, INTERNAL_REPLICATION, type WireKeyTransfer, type WireScanReply } from '../src/protocol/wire'
import { ShardKvError } from '../src/protocol/errors'
import { CONTROL_ANSWER_MAX_BYTES, INTERNAL_BODY_CEILING } from '../src/protocol/limits'
import { readCapped } from '../src/http/capped-body'
import { jsonRequest } from '../src/client/http'
import { kvPath } from '../src/protocol/key'
import type { ClusterMap } from '../src/membership/map'

/**
 * The coordinator's and router's client for shard nodes' internal API (control
 * plane): map installs, migration batches, copy on touch. Its own kept-alive pool,
 * apart from the data plane's, so a slow migration batch never queues client traffic.
 */

export interface PurgeReply { deleted: number, next: string, done: boolean }

export class NodeClient {
  private readonly agent: Agent

  constructor (private readonly timeoutMs = 30_000) {
    this.agent = new Agent({ connections: 8, keepAliveTimeout: 30_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  /**
   * Checks that `nodeUrl` answers /healthz as a shardkv shard node before an admin call
   * puts it in the map. The URL comes from the caller, so nothing the address answers is
   * relayed (no port-scan or response oracle), and at most CONTROL_ANSWER_MAX_BYTES of it is read.
   */
  async probe (nodeUrl: string): Promise<void> {
    const refused = new ShardKvError('invalid_request', `${nodeUrl} does not answer as a shardkv shard node`)
    try {
      const res = await request(nodeUrl + HEALTH_PATH, { dispatcher: this.agent, headersTimeout: 3000, bodyTimeout: 3000 })
      const health = JSON.parse((await readCapped(res, CONTROL_ANSWER_MAX_BYTES, nodeUrl)).toString('utf8')) as { nodeId?: unknown, role?: unknown } | null
      if (res.statusCode !== 200 || typeof health?.nodeId !== 'string' || typeof health.role !== 'string') throw refused
    } catch {
      throw refused
    }
  }

  /** Installs `map` on a node, telling it which group and which node (`self`) it is. */
  async installMap (nodeUrl: string, group: string, map: ClusterMap, coordinator?: string, timeoutMs = 5000): Promise<number> {
    const body = { group, self: nodeUrl, map, ...(coordinator !== undefined ? { coordinator } : {}) }
    const res = await jsonRequest<{ epoch: number }>(nodeUrl + INTERNAL.map, { method: 'PUT', body, dispatcher: this.agent, timeoutMs })
    return res.body.epoch
  }

  async scan (nodeUrl: string, epoch: number, after: number, limit: number): Promise<WireScanReply> {
    return (await jsonRequest<WireScanReply>(nodeUrl + INTERNAL.migrationScan, { method: 'POST', body: { epoch, after, limit }, dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: INTERNAL_BODY_CEILING })).body
  }

  /** Copies keys to their new owner: rows insert-if-absent, applied requests, the request-id floor. */
  async importKeys (nodeUrl: string, transfer: WireKeyTransfer): Promise<{ inserted: number, skipped: number }> {
    return (await jsonRequest<{ inserted: number, skipped: number }>(nodeUrl + INTERNAL.migrationImport, { method: 'POST', body: transfer, dispatcher: this.agent, timeoutMs: this.timeoutMs })).body
  }

  async purge (nodeUrl: string, epoch: number, after: string, limit: number): Promise<PurgeReply> {
    return (await jsonRequest<PurgeReply>(nodeUrl + INTERNAL.migrationPurge, { method: 'POST', body: { epoch, after, limit }, dispatcher: this.agent, timeoutMs: this.timeoutMs })).body
  }

  /** The epoch of the map installed on a node (0: none). */
  async installedEpoch (nodeUrl: string): Promise<number> {
    const res = await jsonRequest<{ epoch: number }>(nodeUrl + INTERNAL.map, { dispatcher: this.agent, timeoutMs: 3000 })
    return typeof res.body.epoch === 'number' ? res.body.epoch : 0
  }

  /** Grants the primary of `group` at `term` the right to serve until `leaseUntil` (ms since the epoch). */
  async lease (nodeUrl: string, group: string, term: number, leaseUntil: number, timeoutMs: number): Promise<void> {
    await jsonRequest(nodeUrl + INTERNAL_REPLICATION.lease, { method: 'POST', body: { group, term, leaseUntil }, dispatcher: this.agent, timeoutMs })
  }

  async stats (nodeUrl: string): Promise<NodeStats> {
    return (await jsonRequest<NodeStats>(nodeUrl + INTERNAL.stats, { dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: CONTROL_ANSWER_MAX_BYTES })).body
  }

  /** What copy on touch moves of a key: its row at a node (tombstone included, or none) and the record of `requestId`. */
  async keyTransfer (nodeUrl: string, key: string, requestId: string): Promise<WireKeyTransfer> {
    const url = `${nodeUrl}${INTERNAL.rowPrefix}${kvPath(key).slice(4)}?request=${encodeURIComponent(requestId)}`
    return (await jsonRequest<WireKeyTransfer>(url, { dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: INTERNAL_BODY_CEILING })).body
  }

  async close (): Promise<void> {
    await this.agent.close()
  }
}
