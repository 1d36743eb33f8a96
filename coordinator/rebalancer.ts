import type { Logger } from '../src/log'
import type { ClusterMap, NodeInfo } from '../src/membership/map'
import { primaryOf } from '../src/membership/map'
import { currentMembers } from '../src/membership/ownership'
import { ringFor, type GroupRing } from '../src/ring/ring'
import type { MapRegistry } from '../src/registry/registry'
import { nextPhase, phaseMap, progressOf, RebalanceError, type RebalanceProgress, type RebalanceState, type SourceProgress, type PurgeProgress } from '../src/membership/rebalance'
import type { NodeClient } from '../src/peer/node-client'
import type { WireKeyTransfer, WireScanReply } from '../src/protocol/wire'
import { MoveBudget, rowBytes, type RebalanceRate } from '../src/membership/rebalance-throttle'

/** The coordinator's map, as the rebalancer (and failover) change it. */
export interface MapAuthority {
  current: () => ClusterMap
  /**
   * Serialized with every other map change: computes the next map from the current
   * one, installs it on every node, then persists and publishes it. When `compute`
   * returns the current map unchanged, it is installed again (idempotent).
   */
  transition: (reason: string, compute: (current: ClusterMap) => ClusterMap) => Promise<ClusterMap>
}

export interface RebalancerOptions {
  /** Where the rebalance's state is persisted (the coordinator's registry). */
  registry: Pick<MapRegistry, 'loadRebalance' | 'saveRebalance'>
  log: Logger
  nodes: NodeClient
  maps: MapAuthority
  batchSize: number
  /** How fast data may move (bytes and rows per second; 0: no limit of that kind). */
  rate: RebalanceRate
  retryDelayMs?: number
}

/** A scan sent before the batch it follows was imported. */
interface ScanAhead { url: string, epoch: number, cursor: number, batch: Promise<WireScanReply> }

/** How often a running copy or purge saves its progress (see saveProgress). */
const PROGRESS_SAVE_MS = 250

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * Drives one rebalance at a time through its phases (src/membership/rebalance.ts),
 * persisting its state after every phase change and every batch, so that a
 * coordinator killed at any point resumes where it was. Every step is idempotent:
 * installs of the same map, scans from a persisted cursor, insert-if-absent copies
 * and purges of foreign rows can all be repeated.
 */
export class Rebalancer {
  private state: RebalanceState | undefined
  private running: Promise<void> | undefined
  private stopping = false
  private starting = false
  private readonly retryDelayMs: number
  private saving: Promise<void> = Promise.resolve()
  private progressSavedAt = 0

  private constructor (private readonly opts: RebalancerOptions, state: RebalanceState | undefined) {
    this.retryDelayMs = opts.retryDelayMs ?? 500
    this.state = state
  }

  /** A rebalancer with the state its registry kept (a rebalance to resume, or the last one's outcome). */
  static async open (opts: RebalancerOptions): Promise<Rebalancer> {
    return new Rebalancer(opts, await opts.registry.loadRebalance())
  }

  isRunning (): boolean {
    return this.state !== undefined && this.state.phase !== 'done'
  }

  progress (): RebalanceProgress | null {
    return this.state === undefined ? null : progressOf(this.state)
  }

  /** Resumes a persisted rebalance that had not finished. */
  resume (): void {
    if (this.isRunning() && this.running === undefined) {
      this.opts.log.info({ event: 'rebalance-resume', id: this.state?.id, phase: this.state?.phase }, 'resuming rebalance')
      this.running = this.run()
    }
  }

  async begin (state: RebalanceState): Promise<RebalanceProgress> {
    // Checked and reserved before any await: two admin calls arriving together must not both start.
    if (this.isRunning() || this.starting) throw new RebalanceError('rebalance_running', `rebalance ${this.state?.id ?? ''} is still running`)
    if (this.opts.maps.current().epoch !== state.fromEpoch) {
      throw new RebalanceError('rebalance_running', `the map changed (epoch ${this.opts.maps.current().epoch}) since this rebalance was planned at epoch ${state.fromEpoch}; try again`)
    }
    this.starting = true
    try {
      return await this.start(state)
    } finally {
      this.starting = false
    }
  }

  private async start (state: RebalanceState): Promise<RebalanceProgress> {
    let estimated = 0
    for (const id of Object.keys(state.sources)) {
      const url = primaryOf(this.opts.maps.current(), id)?.url
      if (url === undefined) continue
      try {
        estimated += (await this.opts.nodes.stats(url)).keys
      } catch (err) {
        this.opts.log.warn({ event: 'rebalance-estimate-failed', group: id, err: (err as Error).message }, 'could not count rows for the progress estimate')
      }
    }
    this.state = { ...state, estimatedRows: estimated }
    await this.persist()
    this.opts.log.info({ event: 'rebalance-start', id: state.id, kind: state.kind, group: state.group, sources: Object.keys(state.sources), estimatedRows: estimated }, 'rebalance started')
    this.running = this.run()
    return progressOf(this.state)
  }

  async stop (): Promise<void> {
    this.stopping = true
    await this.running
  }

  /**
   * Saves the state as it is when the save runs, one save at a time: parallel copy loops
   * persist after each batch, and an older snapshot must never land after a newer one.
   */
  private async persist (): Promise<void> {
    const save = this.saving.then(async () => {
      if (this.state === undefined) return
      this.state.updatedAt = new Date().toISOString()
      await this.opts.registry.saveRebalance(this.state)
    })
    this.saving = save.catch(() => undefined)
    await save
  }

  /**
   * Saves a copy's or a purge's progress at most every PROGRESS_SAVE_MS, not after every
   * batch: a save per batch (an fsync each, with the file registry; a round trip, with etcd)
   * was the coordinator's largest cost. Progress saved late only means that a resumed copy
   * or purge repeats the batches since, which insert-if-absent and purging foreign rows
   * allow; a phase change is always saved (run), and a save that fails (leadership lost)
   * still stops the loop that made it.
   */
  private async saveProgress (): Promise<void> {
    const now = Date.now()
    if (now - this.progressSavedAt < PROGRESS_SAVE_MS) return
    this.progressSavedAt = now
    await this.persist()
  }

  private async run (): Promise<void> {
    while (!this.stopping && this.state !== undefined && this.state.phase !== 'done') {
      const state = this.state
      try {
        await this.perform(state)
        if (this.stopping) break
        state.phase = nextPhase(state)
        delete state.lastError
        if (state.phase === 'done') state.finishedAt = new Date().toISOString()
        await this.persist()
        this.opts.log.info({ event: 'rebalance-phase', id: state.id, phase: state.phase, epoch: this.opts.maps.current().epoch }, `rebalance ${state.phase}`)
      } catch (err) {
        state.lastError = (err as Error).message
        // A coordinator deposed mid-step (etcd lost its quorum, say) cannot save either: that
        // save failing must not end the loop with a rejection, which the term's close would
        // take for a failure of its own and exit on. The loop retries until stop() ends it.
        await this.persist().catch((saveErr: unknown) => {
          this.opts.log.warn({ event: 'rebalance-save-failed', id: state.id, phase: state.phase, err: (saveErr as Error).message }, 'could not save the rebalance\'s state')
        })
        this.opts.log.warn({ event: 'rebalance-retry', id: state.id, phase: state.phase, err: state.lastError }, 'rebalance step failed; retrying')
        await sleep(this.retryDelayMs)
      }
    }
    this.running = undefined
  }

  private async perform (state: RebalanceState): Promise<void> {
    switch (state.phase) {
      case 'fencing':
      case 'settling':
      case 'finishing':
        await this.opts.maps.transition(`rebalance ${state.id}: ${state.phase}`, (current) => phaseMap(state, current))
        return
      case 'copying': return await this.copy(state)
      case 'purging': return await this.purge(state)
      case 'done': return undefined
    }
  }

  /**
   * Every source group copies at once, paced together by one budget: a new group fills
   * from all of its sources in parallel. A loop that fails stops the others at their next
   * batch, and the step fails once all have stopped (the retry starts them afresh from
   * their persisted cursors; no loop outlives its step).
   */
  private async copy (state: RebalanceState): Promise<void> {
    const start = this.opts.maps.current()
    const ring = ringFor(currentMembers(start), start.ring)
    const budget = new MoveBudget(this.opts.rate, Date.now())
    const halt = { failed: false }
    const loops = Object.entries(state.sources).map(async ([sourceId, progress]) => {
      try {
        await this.copySource(ring, sourceId, progress, budget, halt)
      } catch (err) {
        halt.failed = true
        throw err
      }
    })
    const failure = (await Promise.allSettled(loops)).find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure !== undefined) throw failure.reason
  }

  /**
   * One source's rows, batch by batch from its persisted cursor. The next batch is
   * scanned while this one is imported (it is used only if the map is still the one it
   * was scanned at: a failover may replace the source's primary mid-copy).
   */
  private async copySource (ring: GroupRing, sourceId: string, progress: SourceProgress, budget: MoveBudget, halt: { failed: boolean }): Promise<void> {
    let ahead: ScanAhead | undefined
    while (!progress.done && !this.stopping && !halt.failed) {
      const map = this.opts.maps.current()
      const source = primaryOf(map, sourceId)
      if (source === undefined) throw new Error(`source group ${sourceId} has no primary`)
      const fresh = ahead !== undefined && ahead.epoch === map.epoch && ahead.url === source.url && ahead.cursor === progress.cursor
      const batch = fresh ? await ahead!.batch : await this.opts.nodes.scan(source.url, map.epoch, progress.cursor, this.opts.batchSize)
      ahead = batch.done ? undefined : this.scanAhead(source.url, map.epoch, batch.next)
      const inserted = await this.importBatch(ring, sourceId, map, batch)
      progress.cursor = batch.next
      progress.scanned += batch.scanned
      progress.copied += inserted
      progress.done = batch.done
      await this.saveProgress()
      const wait = budget.spend({ rows: batch.scanned, bytes: rowBytes(batch.rows) }, Date.now())
      if (wait > 0) await sleep(wait)
    }
  }

  private scanAhead (url: string, epoch: number, cursor: number): ScanAhead {
    const batch = this.opts.nodes.scan(url, epoch, cursor, this.opts.batchSize)
    // Unused when the import fails or the map moves on: its failure is not this step's.
    batch.catch(() => undefined)
    return { url, epoch, cursor, batch }
  }

  /** Rows and the applied requests of moving keys go to each key's new owner together (targets in parallel). */
  private async importBatch (ring: GroupRing, sourceId: string, map: ClusterMap, batch: WireScanReply): Promise<number> {
    const byTarget = new Map<string, WireKeyTransfer>()
    const forTarget = (key: string): WireKeyTransfer | undefined => {
      const owner = ring.ownerOf(key)
      if (owner === undefined || owner === sourceId) return undefined
      let transfer = byTarget.get(owner)
      if (transfer === undefined) byTarget.set(owner, (transfer = { rows: [], requests: [], floor: batch.floor }))
      return transfer
    }
    for (const row of batch.rows) forTarget(row.key)?.rows.push(row)
    for (const request of batch.requests) forTarget(request.key)?.requests.push(request)
    const counts = await Promise.all([...byTarget].map(async ([targetId, transfer]) => {
      const target = primaryOf(map, targetId)
      if (target === undefined) throw new Error(`target group ${targetId} has no primary`)
      return (await this.opts.nodes.importKeys(target.url, transfer)).inserted
    }))
    return counts.reduce((a, b) => a + b, 0)
  }

  /**
   * Every node of every group that gave keys away deletes them, all at once (one after
   * the other, the purge took longer than the copy): each node purges itself, replicas
   * included, as deletes of foreign rows are not in the change log. Paced together, by rows.
   */
  private async purge (state: RebalanceState): Promise<void> {
    const map = this.opts.maps.current()
    const budget = new MoveBudget(this.opts.rate, Date.now())
    const loops = Object.entries(state.purges).flatMap(([groupId, progress]) =>
      (map.groups.find((g) => g.id === groupId)?.nodes ?? []).map(async (node) => await this.purgeNode(map.epoch, node, progress, budget)))
    const failure = (await Promise.allSettled(loops)).find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure !== undefined) throw failure.reason
  }

  /** One node's foreign rows; a primary's progress is persisted (a replica's starts over: it is cheap and rare). */
  private async purgeNode (epoch: number, node: NodeInfo, progress: PurgeProgress, budget: MoveBudget): Promise<void> {
    const primary = node.role === 'primary'
    let cursor = primary ? progress.cursor : ''
    let done = primary ? progress.done : false
    while (!done && !this.stopping) {
      let reply
      try {
        reply = await this.opts.nodes.purge(node.url, epoch, cursor, this.opts.batchSize)
      } catch (err) {
        // A replica that is down must not stall the rebalance: it resyncs when it returns.
        if (primary) throw err
        this.opts.log.warn({ event: 'purge-replica-skipped', node: node.url, err: (err as Error).message }, 'could not purge a replica; skipping it')
        return
      }
      cursor = reply.next
      done = reply.done
      if (primary) {
        progress.cursor = cursor
        progress.done = done
        progress.deleted += reply.deleted
        await this.saveProgress()
      }
      // A purge moves no data: only the row rate paces it.
      const wait = budget.spend({ rows: reply.deleted, bytes: 0 }, Date.now())
      if (wait > 0) await sleep(wait)
    }
  }
}
