import type { NodeStats, ShardHealth } from '../protocol/node-answers'
import { Agent, request, type Dispatcher } from '../http/undici'
import { HEALTH_PATH, INTERNAL, INTERNAL_REPLICATION, type WireCoordinatorClaim, type WireHandoff, type WireLeaseGrant, type WireMapInstall, type WireKeyTransfer, type WireLeaseReply, type WireScanReply } from '../protocol/wire'
import { ShardKvError } from '../protocol/errors'
import { CONTROL_ANSWER_MAX_BYTES, INTERNAL_BODY_CEILING } from '../protocol/limits'
import { readCapped } from '../http/capped-body'
import { jsonRequest } from '../client/http'
import { kvPath } from '../protocol/key'
import { peerUrlOf, type ClusterMap } from '../membership/map'
import { NO_PEER_CREDENTIALS, PEER_CONNECT_TIMEOUT_MS, peerDispatcher, type PeerCredentials } from '../auth/peer'
import { withPeerTls } from '../auth/tls'

/**
 * The coordinator's and router's client for shard nodes' internal API (control
 * plane): map installs, migration batches, copy on touch. Its own kept-alive pool,
 * apart from the data plane's, so a slow migration batch never queues client traffic.
 *
 * Callers name nodes by their data URL (their identity in the map); the calls go to
 * the node's peer listener. Where that is comes from the node's own /healthz (learned
 * at every health check, or by a probe before the first call), else from the map: a
 * node restarted on another peer port is reached before the map says so.
 */

export interface PurgeReply { deleted: number, next: string, done: boolean }

export interface NodeClientOptions {
  timeoutMs?: number
  credentials?: PeerCredentials
  /** The peer URL the current map gives a node, if any. */
  mapPeerOf?: (url: string) => string | undefined
}

export class NodeClient {
  private readonly agent: Dispatcher
  /**
   * For /healthz probes, without the secret: the endpoint is open, and a probed URL
   * comes from an admin call (it may be anyone's until it has answered as a node).
   */
  private readonly plain: Agent
  private readonly timeoutMs: number
  private readonly mapPeerOf: (url: string) => string | undefined
  /** Data URL -> peer URL, as the node's /healthz last told it. */
  private readonly learned = new Map<string, string>()
  /** The coordinator's advertised URL: leases name it (nodes take leases from their map's coordinator only). */
  coordinatorUrl: string | undefined
  /** The leadership fence every command carries (src/registry/fence.ts); 0 with the file registry. */
  fence = 0
  private abandoned = false

  constructor (options: NodeClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.mapPeerOf = options.mapPeerOf ?? (() => undefined)
    // Its certificate is public, so presenting it to an address an admin named gives nothing away.
    this.plain = new Agent(withPeerTls({ connections: 2, keepAliveTimeout: 10_000, connect: { timeout: PEER_CONNECT_TIMEOUT_MS } }, options.credentials?.tls))
    this.agent = peerDispatcher(options.credentials ?? NO_PEER_CREDENTIALS, { connections: 8, keepAliveTimeout: 30_000, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs })
  }

  /** Records where a node's internal API is, from a health check of it. */
  learnPeer (url: string, peer: string): void {
    this.learned.set(url, peer)
  }

  /**
   * Forgets what was learned of nodes outside `urls` (the published map's): probes of
   * addresses that never joined, and nodes that left, would otherwise pile up.
   */
  retain (urls: ReadonlySet<string>): void {
    for (const url of this.learned.keys()) if (!urls.has(url)) this.learned.delete(url)
  }

  /** Where a node's internal API is, as far as known without asking it. */
  peerOf (url: string): string | undefined {
    return this.learned.get(url) ?? this.mapPeerOf(url)
  }

  private async target (url: string): Promise<string> {
    return this.peerOf(url) ?? await this.probe(url)
  }

  /**
   * Checks that `nodeUrl` answers /healthz as a shardkv shard node before an admin call
   * puts it in the map. The URL comes from the caller, so nothing the address answers is
   * relayed (no port-scan or response oracle), and at most CONTROL_ANSWER_MAX_BYTES of it is read.
   * Resolves with the node's peer URL (its data URL when it has no peer listener).
   */
  async probe (nodeUrl: string): Promise<string> {
    const refused = new ShardKvError('invalid_request', `${nodeUrl} does not answer as a shardkv shard node`)
    try {
      const res = await request(nodeUrl + HEALTH_PATH, { dispatcher: this.plain, headersTimeout: 3000, bodyTimeout: 3000 })
      const health = JSON.parse((await readCapped(res, CONTROL_ANSWER_MAX_BYTES, nodeUrl)).toString('utf8')) as { nodeId?: unknown, role?: unknown, peerPort?: unknown, peerTls?: unknown } | null
      if (res.statusCode !== 200 || typeof health?.nodeId !== 'string' || typeof health.role !== 'string') throw refused
      const peer = peerUrlOf(nodeUrl, health)
      this.learned.set(nodeUrl, peer)
      return peer
    } catch {
      throw refused
    }
  }

  /** Installs `map` on a node, telling it which group and which node (`self`) it is (within timeoutMs: see `bounded`). */
  async installMap (nodeUrl: string, group: string, map: ClusterMap, coordinator?: string, timeoutMs = 5000): Promise<number> {
    const body: WireMapInstall = { group, self: nodeUrl, map, ...(coordinator !== undefined ? { coordinator } : {}), fence: this.fence }
    const target = await this.target(nodeUrl)
    const res = await bounded(timeoutMs, async (signal) => await jsonRequest<{ epoch: number }>(target + INTERNAL.map, { method: 'PUT', body, dispatcher: this.agent, timeoutMs, signal }))
    return res.body.epoch
  }

  async scan (nodeUrl: string, epoch: number, after: number, limit: number): Promise<WireScanReply> {
    return (await jsonRequest<WireScanReply>(await this.target(nodeUrl) + INTERNAL.migrationScan, { method: 'POST', body: { epoch, after, limit }, dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: INTERNAL_BODY_CEILING })).body
  }

  /** Copies keys to their new owner: rows insert-if-absent, applied requests, the request-id floor. */
  async importKeys (nodeUrl: string, transfer: WireKeyTransfer): Promise<{ inserted: number, skipped: number }> {
    return (await jsonRequest<{ inserted: number, skipped: number }>(await this.target(nodeUrl) + INTERNAL.migrationImport, { method: 'POST', body: transfer, dispatcher: this.agent, timeoutMs: this.timeoutMs })).body
  }

  async purge (nodeUrl: string, epoch: number, after: string, limit: number): Promise<PurgeReply> {
    return (await jsonRequest<PurgeReply>(await this.target(nodeUrl) + INTERNAL.migrationPurge, { method: 'POST', body: { epoch, after, limit }, dispatcher: this.agent, timeoutMs: this.timeoutMs })).body
  }

  /** Grants the primary of `group` at `term` the right to serve until `leaseUntil` (ms since the epoch), within timeoutMs (see `bounded`). */
  async lease (nodeUrl: string, group: string, term: number, leaseUntil: number, timeoutMs: number): Promise<WireLeaseReply> {
    const body: WireLeaseGrant = { group, term, leaseUntil, ...this.claim() }
    const target = await this.target(nodeUrl)
    return (await bounded(timeoutMs, async (signal) => await jsonRequest<WireLeaseReply>(target + INTERNAL_REPLICATION.lease, { method: 'POST', body, dispatcher: this.agent, timeoutMs, signal }))).body
  }

  /** Tells a fenced primary who takes over from which position (a planned switchover). */
  async handoff (nodeUrl: string, handoff: WireHandoff): Promise<void> {
    const body: WireHandoff & WireCoordinatorClaim = { ...handoff, ...this.claim() }
    await jsonRequest(await this.target(nodeUrl) + INTERNAL_REPLICATION.handoff, { method: 'POST', body, dispatcher: this.agent, timeoutMs: 5000 })
  }

  /** A node's /healthz answer (its replication position, role, term), fresh: not the health checker's last view. */
  async health (nodeUrl: string, timeoutMs = 2000): Promise<ShardHealth> {
    return (await jsonRequest<ShardHealth>(nodeUrl + HEALTH_PATH, { dispatcher: this.plain, timeoutMs, maxBytes: CONTROL_ANSWER_MAX_BYTES })).body
  }

  async stats (nodeUrl: string): Promise<NodeStats> {
    return (await jsonRequest<NodeStats>(await this.target(nodeUrl) + INTERNAL.stats, { dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: CONTROL_ANSWER_MAX_BYTES })).body
  }

  /** What copy on touch moves of a key: its row at a node (tombstone included, or none) and the record of `requestId`. */
  async keyTransfer (nodeUrl: string, key: string, requestId: string): Promise<WireKeyTransfer> {
    const url = `${await this.target(nodeUrl)}${INTERNAL.rowPrefix}${kvPath(key).slice(4)}?request=${encodeURIComponent(requestId)}`
    return (await jsonRequest<WireKeyTransfer>(url, { dispatcher: this.agent, timeoutMs: this.timeoutMs, maxBytes: INTERNAL_BODY_CEILING })).body
  }

  private claim (): WireCoordinatorClaim {
    return { ...(this.coordinatorUrl !== undefined ? { coordinator: this.coordinatorUrl } : {}), fence: this.fence }
  }

  /**
   * Gives up every call in flight and any made later (they fail at once): a deposed
   * coordinator's term drops its work, and a call to a node that does not answer would
   * otherwise hold the term's stop for its whole timeout.
   */
  async abandon (): Promise<void> {
    if (this.abandoned) return
    this.abandoned = true
    await Promise.all([this.agent.destroy(), this.plain.destroy()])
  }

  async close (): Promise<void> {
    if (this.abandoned) return
    await Promise.all([this.agent.close(), this.plain.close()])
  }
}

/**
 * Settles a control call within timeoutMs whatever its connection does. undici's timeouts
 * start once a socket is connected, and an abort signal takes effect only then too: to a
 * node behind a partition that drops packets, a new connection hangs for the agent's 10 s
 * connect timeout, and a cut-off primary was failed over only after three such lease
 * grants and a map install, 25 s (test/integration/partition-primary.test.ts). The
 * signal still cancels the request, so a connection made late sends nothing.
 */
async function bounded<T> (timeoutMs: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const signal = AbortSignal.timeout(timeoutMs)
  return await new Promise<T>((resolve, reject) => {
    const expire = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', expire, { once: true })
    call(signal).then(resolve, reject).finally(() => { signal.removeEventListener('abort', expire) })
  })
}
