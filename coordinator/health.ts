import type { NodeHealth } from '../src/protocol/cluster-view'
import { CONTROL_ANSWER_MAX_BYTES } from '../src/protocol/limits'
import { readCapped } from '../src/http/capped-body'
import { Agent, request } from '../src/http/undici'
import type { Logger } from '../src/log'
import { HEALTH_PATH } from '../src/protocol/wire'
import { withPeerTls, type PeerTls } from '../src/auth/tls'
import { peerUrlOf } from '../src/membership/map'

/**
 * Periodic `GET /healthz` of every shard node in the map. It only observes: what
 * the coordinator does about a node that stays down (failover) is a later decision
 * built on `statusOf`. A round checks all nodes in parallel and the next round is
 * scheduled when it ends, so a slow node can never pile up overlapping checks.
 * /healthz is open, so checks carry no peer secret (nothing a node needs to prove).
 */

export type Health = NodeHealth

export interface NodeStatus {
  health: Health
  /** The shard node's primary (supervisor) pid. */
  pid: number | null
  nodeId: string | null
  /** The node's replication position (its highest seq). */
  position: number | null
  /** The map epoch installed on the node. */
  epoch: number | null
  /** Where the node serves its internal API (peerUrlOf its /healthz): its peer listener, else its data URL. */
  peer: string | null
  lastCheckAt: string | null
  lastError: string | null
}

export interface HealthTarget {
  group: string
  url: string
}

export interface HealthCheckerOptions {
  targets: () => readonly HealthTarget[]
  intervalMs: number
  log: Logger
  /** Called when a node's health changes (not on every check). */
  onChange?: (target: HealthTarget, status: NodeStatus) => void
  /** Called after every check that reached the node. */
  onCheck?: (target: HealthTarget, status: NodeStatus) => void
  /** Verifies nodes' HTTPS data ports (src/auth/tls.ts withPeerTls); absent: plain HTTP or the system CAs. */
  peerTls?: PeerTls
}

const UNKNOWN: NodeStatus = Object.freeze({
  health: 'unknown',
  pid: null,
  nodeId: null,
  position: null,
  epoch: null,
  peer: null,
  lastCheckAt: null,
  lastError: null
})

/**
 * Short enough that a hung node is noticed within about one interval, but never so
 * short that a busy machine reads as a dead node (rounds never overlap, so a
 * timeout longer than a tiny interval only stretches that round).
 */
function checkTimeoutMs (intervalMs: number): number {
  return Math.max(250, Math.min(1000, intervalMs))
}

function numberOrNull (v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

function errorText (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown, name?: unknown }
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timeout'
  const code = typeof e.code === 'string' ? e.code : undefined
  const message = typeof e.message === 'string' ? e.message : String(err)
  return code === undefined || message.includes(code) ? message : `${code}: ${message}`
}

export class HealthChecker {
  private readonly options: HealthCheckerOptions
  private readonly timeoutMs: number
  // Its own connections: a check must not queue behind data requests in the forwarding pools.
  private readonly agent: Agent
  private readonly statuses = new Map<string, NodeStatus>()
  private timer: NodeJS.Timeout | undefined
  private round: Promise<void> | undefined
  private stopped = false

  constructor (options: HealthCheckerOptions) {
    this.options = options
    this.timeoutMs = checkTimeoutMs(options.intervalMs)
    this.agent = new Agent(withPeerTls({ connections: 1, pipelining: 1, connect: { timeout: this.timeoutMs } }, options.peerTls))
  }

  start (): void {
    if (this.stopped || this.round !== undefined || this.timer !== undefined) return
    this.runRound()
  }

  statusOf (url: string): NodeStatus {
    return this.statuses.get(url) ?? UNKNOWN
  }

  /**
   * Another probe of the node failed (the failover monitor's last lease probe): it reads
   * as down, as after a failed check, until the next check says otherwise. Without it a
   * promotion right after a death could wait on an install to the dead node for a full
   * timeout (the checker may not have run since the death).
   */
  markDown (url: string, why: string): void {
    const previous = this.statusOf(url)
    const target = this.options.targets().find((t) => t.url === url)
    if (this.stopped || target === undefined || previous.health === 'down') return
    this.apply(target, previous, { ...previous, health: 'down', lastCheckAt: new Date().toISOString(), lastError: why })
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    await this.round
    await this.agent.close()
  }

  private runRound (): void {
    this.round = this.checkAll().finally(() => {
      this.round = undefined
      if (this.stopped) return
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.runRound()
      }, this.options.intervalMs)
      this.timer.unref()
    })
  }

  private async checkAll (): Promise<void> {
    const targets = this.options.targets()
    const live = new Set<string>()
    for (const t of targets) live.add(t.url)
    for (const url of this.statuses.keys()) {
      if (!live.has(url)) this.statuses.delete(url)
    }
    await Promise.all(targets.map(async (t) => { await this.checkOne(t) }))
  }

  private async checkOne (target: HealthTarget): Promise<void> {
    const previous = this.statusOf(target.url)
    let next: NodeStatus
    try {
      next = await this.probe(target.url, previous)
    } catch (err) {
      next = { ...previous, health: 'down', lastCheckAt: new Date().toISOString(), lastError: errorText(err) }
    }
    if (this.stopped) return
    this.apply(target, previous, next)
  }

  private apply (target: HealthTarget, previous: NodeStatus, next: NodeStatus): void {
    this.statuses.set(target.url, next)
    if (next.health === 'up') this.options.onCheck?.(target, next)
    if (next.health !== previous.health) {
      const level = next.health === 'down' ? 'warn' : 'info'
      this.options.log[level]({ event: 'node-health', group: target.group, url: target.url, health: next.health, previous: previous.health, nodeId: next.nodeId, error: next.lastError ?? undefined }, `shard node ${target.url} is ${next.health}`)
      this.options.onChange?.(target, next)
    }
  }

  private async probe (url: string, previous: NodeStatus): Promise<NodeStatus> {
    const res = await request(url + HEALTH_PATH, {
      dispatcher: this.agent,
      method: 'GET',
      signal: AbortSignal.timeout(this.timeoutMs),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs
    })
    const lastCheckAt = new Date().toISOString()
    if (res.statusCode !== 200) {
      await res.body.dump()
      return { ...previous, health: 'down', lastCheckAt, lastError: `HTTP ${res.statusCode}` }
    }
    const body = JSON.parse((await readCapped(res, CONTROL_ANSWER_MAX_BYTES, url + HEALTH_PATH)).toString('utf8')) as Record<string, unknown>
    const ok = body.status === 'ok'
    return {
      health: ok ? 'up' : 'down',
      pid: numberOrNull(body.pid),
      nodeId: typeof body.nodeId === 'string' ? body.nodeId : null,
      position: numberOrNull(body.position),
      epoch: numberOrNull(body.epoch),
      peer: peerUrlOf(url, body),
      lastCheckAt,
      lastError: ok ? null : `status ${String(body.status)}`
    }
  }
}
