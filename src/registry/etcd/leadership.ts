import { setTimeout as sleep } from 'node:timers/promises'
import { EtcdError, type EtcdGateway } from './gateway'
import { b64, num, unb64, type EtcdCompare } from './wire'
import { holdsLeadership, renewalIntervalMs } from '../leadership-policy'
import type { WireLeader } from '../../protocol/wire'

export interface CampaignOptions {
  /** The election's key, e.g. /shardkv/<cluster>/coordinator/leader. */
  key: string
  /** Who campaigns (the coordinator's advertised URL): the leader key's value. */
  candidate: string
  ttlSeconds: number
  /** How often a follower looks whether the key is free (default 250 ms). */
  pollMs?: number
  onEvent?: (event: 'elected' | 'deposed', detail: string) => void
}

/**
 * Leader election on one etcd key bound to a lease, as TiKV's placement driver does:
 * whoever creates the key (compare create_revision = 0) leads until its lease ends.
 * The key's create revision is the leadership's **fence**: it only grows from leader to
 * leader, it guards every registry write (`guard()`), and nodes refuse commands carrying
 * an older one. Whether this process still leads is decided by holdsLeadership on its
 * own clock, never by waiting for an event from etcd.
 */
export class EtcdLeadership {
  private lease: string | undefined
  private fenceRevision = 0
  private renewalSentAt: number | undefined
  private lost = false
  private stopped = false
  private renewing: Promise<void> | undefined
  private readonly ttlMs: number

  constructor (private readonly gateway: EtcdGateway, private readonly opts: CampaignOptions) {
    this.ttlMs = opts.ttlSeconds * 1000
  }

  /** The leadership revision (0 while not leading). */
  get fence (): number {
    return this.isLeader() ? this.fenceRevision : 0
  }

  isLeader (now = Date.now()): boolean {
    return holdsLeadership({ renewalSentAt: this.renewalSentAt, ttlMs: this.ttlMs, lost: this.lost }, now)
  }

  /** The compare every write of the leader carries: its key, created at its fence, still exists. */
  guard (): EtcdCompare {
    return { key: b64(this.opts.key), target: 'CREATE', result: 'EQUAL', create_revision: String(this.fenceRevision) }
  }

  /** Who leads now, as etcd says (undefined: nobody); `signal` gives the read up. */
  async leader (signal?: AbortSignal): Promise<{ candidate: string, fence: number } | undefined> {
    const r = await this.gateway.range(this.opts.key, { signal })
    const kv = r.kvs[0]
    return kv === undefined ? undefined : { candidate: unb64(kv.value), fence: num(kv.create_revision) }
  }

  /** Resolves once this candidate leads (or rejects when stopped). Safe to call again after being deposed. */
  async campaign (): Promise<number> {
    while (!this.stopped) {
      try {
        if (await this.tryOnce()) return this.fenceRevision
      } catch (err) {
        if (!(err instanceof EtcdError)) throw err
      }
      await sleep(this.opts.pollMs ?? 250)
    }
    throw new Error('the campaign was stopped')
  }

  /** Gives leadership up at once (revokes the lease: the key goes, a rival may lead). */
  async resign (): Promise<void> {
    this.stopped = true
    this.lost = true
    await this.renewing
    const lease = this.lease
    this.lease = undefined
    if (lease !== undefined) await this.gateway.leaseRevoke(lease).catch(() => undefined)
  }

  private async tryOnce (): Promise<boolean> {
    const sentAt = Date.now()
    const lease = await this.gateway.leaseGrant(this.opts.ttlSeconds)
    const key = b64(this.opts.key)
    const txn = await this.gateway.txn(
      [{ key, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
      [{ request_put: { key, value: b64(this.opts.candidate), lease: lease.id } }]
    ).catch(async (err: unknown) => {
      // Ambiguous: the key may be ours now. Read it rather than guess.
      if (err instanceof EtcdError && err.kind === 'ambiguous') return undefined
      throw err
    })
    const mine = txn?.succeeded === true ? txn.revision : await this.ownedAt(lease.id)
    if (mine === undefined) {
      await this.gateway.leaseRevoke(lease.id).catch(() => undefined)
      return false
    }
    this.lease = lease.id
    this.fenceRevision = mine
    this.renewalSentAt = sentAt
    this.lost = false
    this.opts.onEvent?.('elected', `fence ${mine}`)
    this.renewing = this.renewLoop(lease.id)
    return true
  }

  /** The key's create revision when it is held by `lease`, else undefined. */
  private async ownedAt (lease: string): Promise<number | undefined> {
    const kv = (await this.gateway.range(this.opts.key)).kvs[0]
    return kv !== undefined && kv.lease === lease ? num(kv.create_revision) : undefined
  }

  private async renewLoop (lease: string): Promise<void> {
    while (!this.stopped && this.lease === lease && !this.lost) {
      await sleep(renewalIntervalMs(this.ttlMs))
      if (this.stopped || this.lease !== lease) return
      const sentAt = Date.now()
      try {
        const ttl = await this.gateway.leaseKeepAlive(lease)
        if (ttl > 0) {
          this.renewalSentAt = sentAt
          continue
        }
        this.depose(`the lease expired in etcd (fence ${this.fenceRevision})`)
      } catch (err) {
        // Unreachable: keep trying; holdsLeadership ends the leadership on time meanwhile.
        if (!this.isLeader()) this.depose(`no renewal for ${Date.now() - (this.renewalSentAt ?? 0)} ms: ${(err as Error).message}`)
      }
    }
  }

  private depose (why: string): void {
    if (this.lost) return
    this.lost = true
    this.lease = undefined
    this.opts.onEvent?.('deposed', why)
  }
}

/** A coordinator's leader key value (its WireLeader as JSON), or undefined when it is not one. */
export function parseLeader (text: string | undefined): WireLeader | undefined {
  if (text === undefined) return undefined
  try {
    const v = JSON.parse(text) as Partial<WireLeader> | null
    return typeof v?.url === 'string' && typeof v.peer === 'string' ? { url: v.url, peer: v.peer } : undefined
  } catch {
    return undefined
  }
}
