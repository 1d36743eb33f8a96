import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError } from '../src/config/options'
import type { Logger } from '../src/log'
import { parseRegistry, validateClusterName } from '../src/registry/registry-url'
import { EtcdGateway } from '../src/registry/etcd/gateway'
import { clusterKeys, EtcdRegistry } from '../src/registry/etcd/etcd-registry'
import { EtcdLeadership, parseLeader } from '../src/registry/etcd/leadership'
import type { MapWatch } from '../src/registry/registry'
import { HeldMapFollower, type MapFollower } from './map-follower'
import { Registration, routerEntryKey } from '../src/registry/etcd/directory'
import type { WireRouterRegistration } from '../src/protocol/wire'

/** How often the leader key is read for where admin calls go (a relayed call that finds the old leader gone asks again at once). */
const LEADER_POLL_MS = 1000

/**
 * Follows the map in etcd (the etcd registry): a watch that resumes from its revision
 * and reads the map again when etcd compacted past it (EtcdRegistry.watch), so the
 * router needs no coordinator to route and learns each published map from etcd itself.
 * Admin calls go to whoever holds the leader key.
 */
export class EtcdFollower extends HeldMapFollower implements MapFollower {
  private watch: MapWatch | undefined
  private leader: string | undefined
  private leaderLoop: Promise<void> | undefined
  /** The leader-key read under way: calls that ask at once share it (a stranger's calls cannot multiply etcd reads). */
  private leaderRead: Promise<string | undefined> | undefined
  private readonly leaderListeners = new Set<(url: string) => void>()
  readonly electedLeader = true
  private readonly election: EtcdLeadership
  private registration: Registration | undefined

  private constructor (private readonly gateway: EtcdGateway, private readonly registry: EtcdRegistry, leaderKey: string, private readonly log: Logger,
    private readonly cluster: string, private readonly ttlSeconds: number) {
    super()
    // Only read: who holds the key (this router never campaigns).
    this.election = new EtcdLeadership(gateway, { key: leaderKey, candidate: '', ttlSeconds: 1 })
  }

  static open (opts: { registry: string, cluster: string, registrationTtlSeconds: number, log: Logger }): EtcdFollower {
    let endpoints: string[]
    try {
      const spec = parseRegistry(opts.registry)
      if (spec.kind !== 'etcd') throw new Error('--registry must be etcd://... here')
      endpoints = spec.endpoints
      validateClusterName(opts.cluster)
    } catch (err) {
      throw new ConfigError((err as Error).message)
    }
    const gateway = new EtcdGateway({ endpoints })
    return new EtcdFollower(gateway, new EtcdRegistry({ gateway, cluster: opts.cluster }), clusterKeys(opts.cluster).leader, opts.log, opts.cluster, opts.registrationTtlSeconds)
  }

  coordinatorUrl (): string | undefined {
    return this.leader
  }

  start (): void {
    this.watch ??= this.registry.watch(0, (map) => { this.adopt(map, this.log) })
    this.leaderLoop ??= this.followLeader()
  }

  /** Registers this router under a lease, so the leading coordinator lists it (the dashboard's traffic line). */
  announce (url: string): void {
    if (this.stopped || this.registration !== undefined) return
    const entry: WireRouterRegistration = { url, pid: process.pid, startedAt: new Date().toISOString() }
    this.registration = new Registration(this.gateway, routerEntryKey(this.cluster, url), entry, this.ttlSeconds, {
      onLost: (why) => this.log.warn({ event: 'registration-lost', why }, 'not registered in etcd; trying again')
    })
  }

  async close (): Promise<void> {
    this.stopped = true
    // Out of the registry first: the coordinator stops counting this router now, not after the TTL.
    await this.registration?.close()
    await this.watch?.close()
    await this.leaderLoop
    await this.gateway.close()
  }

  async refreshCoordinator (): Promise<string | undefined> {
    this.leaderRead ??= this.readLeader().finally(() => { this.leaderRead = undefined })
    return await this.leaderRead
  }

  onCoordinatorChange (listener: (url: string) => void): () => void {
    this.leaderListeners.add(listener)
    return () => { this.leaderListeners.delete(listener) }
  }

  private async readLeader (): Promise<string | undefined> {
    const before = this.leader
    try {
      this.leader = parseLeader((await this.election.leader())?.candidate)?.url
    } catch {
      // etcd unreachable: keep the last leader known; a relayed call finds out soon enough.
    }
    const now = this.leader
    if (now !== undefined && now !== before) for (const listener of this.leaderListeners) listener(now)
    return now
  }

  private async followLeader (): Promise<void> {
    while (!this.stopped) {
      await this.refreshCoordinator()
      await sleep(LEADER_POLL_MS)
    }
  }
}
