import type { FastifyBaseLogger } from 'fastify'
import type { KvStore, StoreOp } from '../src/storage/store'
import { ExpiryReader } from '../src/storage/expiry'
import type { OwnershipCache } from './ownership-cache'
import type { WriteQueue } from './serving'

/**
 * Deletes expired rows on a group's primary, as ordinary writes: each is an `expire`
 * op through the worker's group commit, so it passes the fence (only the owning primary
 * under its lease deletes), gets a seq, replicates and migrates like a client's DELETE,
 * and the change feed reports it (its tombstone keeps the expiry: reason "expired").
 *
 * Reads never wait for it: an expired row reads as absent wherever it is read (the
 * store judges expiry at read time). The sweeper only reclaims space and turns the
 * expiry into a change others can see. It is bounded: at most `batch` rows per pass,
 * a pass every `intervalMs`, back to back only while passes come back full. Every
 * worker of a node sweeps; an `expire` op applies only while the row is still the
 * expired version it saw, so two workers racing on a row delete it once.
 */

export interface ExpirySweeperOptions {
  store: KvStore
  ownership: OwnershipCache
  writes: WriteQueue
  replicated: (seq: number) => Promise<void>
  log: FastifyBaseLogger
  intervalMs: number
  batch: number
  /** How long the change feed keeps entries (every role compacts its own feed). */
  feedRetentionMs: number
}

/** How long to wait before the next pass: none while a pass deletes a full batch (more is due), else the interval. */
export function nextSweepDelay (deleted: number, batch: number, intervalMs: number): number {
  return deleted >= batch ? 0 : intervalMs
}

export class ExpirySweeper {
  private readonly reader: ExpiryReader
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor (private readonly opts: ExpirySweeperOptions) {
    this.reader = new ExpiryReader(opts.store)
  }

  start (): void {
    // Workers start together: spread their passes over the interval.
    this.schedule(Math.floor(Math.random() * this.opts.intervalMs))
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
  }

  private schedule (ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => { void this.pass() }, ms)
    this.timer.unref()
  }

  private async pass (): Promise<void> {
    let deleted = 0
    try {
      deleted = await this.sweepOnce()
    } catch (err) {
      this.opts.log.warn({ event: 'expiry-sweep-failed', err: (err as Error).message }, 'an expiry sweep failed; retrying later')
    }
    this.schedule(nextSweepDelay(deleted, this.opts.batch, this.opts.intervalMs))
  }

  /** One pass: returns how many expired rows it deleted. */
  async sweepOnce (): Promise<number> {
    const { store, ownership, writes, batch } = this.opts
    if (store.isOpen) store.feed.compact(Date.now() - this.opts.feedRetentionMs)
    const view = ownership.get(store.installedEpoch())
    if (view.role !== 'primary' || !store.isOpen) return 0
    const due = this.reader.due(Date.now(), batch)
    // Keys being handed over or gone are the new owner's to expire (the guard would refuse them).
    const ops: StoreOp[] = due.filter((r) => view.access(r.key) === 'owned').map((r) => ({ op: 'expire', key: r.key, version: r.version }))
    if (ops.length === 0) return 0
    const outcomes = await writes.submit(ops)
    let maxSeq = 0
    let expired = 0
    for (const out of outcomes) {
      if (out.kind === 'write' && out.outcome.ok) {
        expired++
        maxSeq = Math.max(maxSeq, out.outcome.seq)
      }
    }
    if (expired > 0) this.opts.log.debug({ event: 'expired-rows-deleted', count: expired }, 'deleted expired rows')
    // Wakes the shipper; a pass ends once its deletes are on the in-sync replicas.
    await this.opts.replicated(maxSeq)
    return expired
  }
}
