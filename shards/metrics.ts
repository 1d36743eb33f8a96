import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type RegistryContentType } from 'prom-client'
import { METRIC_PREFIX } from '../src/protocol/wire'

/**
 * Prometheus metrics of a shard node. Each worker counts what it serves in its own
 * registry; the supervisor aggregates all workers (prom-client's cluster support)
 * and adds its own supervision metrics, so a scrape of any worker returns the node.
 * An in-process node (`--workers 0`) has one serving registry, in the supervisor's
 * process, and no aggregation.
 */

export interface ShardMetrics {
  registry: Registry
  reads: Counter
  writes: Counter
  requests: Counter<'method' | 'status'>
  duration: Histogram<'method'>
  /** POST /batch requests served (answered 200), and their ops by kind. */
  batches: Counter
  batchOps: Counter<'op'>
  /** Ops per group-commit transaction (its count is the number of transactions). */
  commitOps: Histogram
  /** Group-commit transactions that failed as a whole (every write in them failed). */
  commitFailures: Counter
}

/** `clustered`: a forked worker, whose registry the supervisor aggregates; else the node's own process. */
export function createWorkerMetrics (clustered: boolean): ShardMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: `${METRIC_PREFIX}shard_` })
  if (clustered) {
    AggregatorRegistry.setRegistries([registry])
    // Constructing one installs the worker's listener that answers the supervisor.
    void new AggregatorRegistry()
  }
  return {
    registry,
    reads: new Counter({ name: `${METRIC_PREFIX}shard_reads_total`, help: 'Key reads served.', registers: [registry] }),
    writes: new Counter({ name: `${METRIC_PREFIX}shard_writes_total`, help: 'Writes and deletes committed or refused by a precondition.', registers: [registry] }),
    requests: new Counter({ name: `${METRIC_PREFIX}shard_http_requests_total`, help: 'HTTP requests by method and status.', labelNames: ['method', 'status'], registers: [registry] }),
    duration: new Histogram({
      name: `${METRIC_PREFIX}shard_http_request_duration_seconds`,
      help: 'HTTP request duration in the worker.',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry]
    }),
    batches: new Counter({ name: `${METRIC_PREFIX}shard_batches_total`, help: 'POST /batch requests answered 200.', registers: [registry] }),
    batchOps: new Counter({ name: `${METRIC_PREFIX}shard_batch_ops_total`, help: 'Operations in answered batches, by op.', labelNames: ['op'], registers: [registry] }),
    commitOps: new Histogram({
      name: `${METRIC_PREFIX}shard_group_commit_ops`,
      help: 'Writes (and batch reads) per group-commit transaction: one fsync each.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [registry]
    }),
    commitFailures: new Counter({ name: `${METRIC_PREFIX}shard_group_commit_failures_total`, help: 'Group-commit transactions that failed as a whole.', registers: [registry] })
  }
}

/**
 * Counts an answered batch: once per op kind, not per op (coalesced router reads make
 * this a hot path, and each labelled inc looks its series up again).
 */
export function countBatch (metrics: ShardMetrics, ops: ReadonlyArray<{ op: 'get' | 'put' | 'delete' }>): void {
  let gets = 0
  let puts = 0
  for (const o of ops) {
    if (o.op === 'get') gets++
    else if (o.op === 'put') puts++
  }
  const deletes = ops.length - gets - puts
  metrics.batches.inc()
  if (gets > 0) { metrics.batchOps.inc({ op: 'get' }, gets); metrics.reads.inc(gets) }
  if (puts > 0) metrics.batchOps.inc({ op: 'put' }, puts)
  if (deletes > 0) metrics.batchOps.inc({ op: 'delete' }, deletes)
  if (puts + deletes > 0) metrics.writes.inc(puts + deletes)
}

export interface SupervisorMetrics {
  registry: Registry
  /** Every forked worker's registry, aggregated; undefined in-process. */
  aggregator: AggregatorRegistry<RegistryContentType> | undefined
  workers: Gauge
  replaced: Counter<'reason'>
  position: Gauge
}

/** What the node's change feed holds (undefined: the store is closed). */
export interface FeedRetention {
  retentionSeconds: number
  stats: () => { entries: number, oldestAt: number | null, floor: number } | undefined
}

/**
 * The change feed's retention as gauges: what is configured, and what the node holds —
 * entries, the oldest one's age, and the floor (a watch cursor at or below it is
 * answered cursor_compacted). One read of the feed per scrape serves the three.
 */
function feedGauges (registry: Registry, feed: FeedRetention): void {
  let read: { at: number, stats: ReturnType<FeedRetention['stats']> } = { at: 0, stats: undefined }
  const stats = (): ReturnType<FeedRetention['stats']> => {
    if (Date.now() - read.at > 1000) read = { at: Date.now(), stats: feed.stats() }
    return read.stats
  }
  new Gauge({ name: `${METRIC_PREFIX}shard_watch_feed_retention_seconds`, help: 'How long the change feed keeps every change (--watch-retention-seconds).', registers: [registry] }).set(feed.retentionSeconds)
  void new Gauge({ name: `${METRIC_PREFIX}shard_watch_feed_entries`, help: 'Change feed entries this node holds.', registers: [registry], collect () { this.set(stats()?.entries ?? 0) } })
  void new Gauge({ name: `${METRIC_PREFIX}shard_watch_feed_floor_seq`, help: 'The change feed\'s floor: a watch cursor at or below this seq is answered cursor_compacted.', registers: [registry], collect () { this.set(stats()?.floor ?? 0) } })
  void new Gauge({
    name: `${METRIC_PREFIX}shard_watch_feed_oldest_age_seconds`,
    help: 'Age of the oldest change feed entry held (0 when none).',
    registers: [registry],
    collect () { const oldest = stats()?.oldestAt ?? null; this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000)) }
  })
}

export function createSupervisorMetrics (labels: { nodeId: string, group: string }, position: () => number, clustered: boolean, feed: FeedRetention): SupervisorMetrics {
  const registry = new Registry()
  feedGauges(registry, feed)
  const info = new Gauge({ name: `${METRIC_PREFIX}shard_info`, help: 'Constant 1, labelled with the node identity.', labelNames: ['node_id', 'group'], registers: [registry] })
  info.set({ node_id: labels.nodeId, group: labels.group }, 1)
  return {
    registry,
    aggregator: clustered ? new AggregatorRegistry() : undefined,
    workers: new Gauge({ name: `${METRIC_PREFIX}shard_workers`, help: 'Live worker processes.', registers: [registry] }),
    replaced: new Counter({ name: `${METRIC_PREFIX}shard_worker_replacements_total`, help: 'Workers started to replace another, by reason.', labelNames: ['reason'], registers: [registry] }),
    position: new Gauge({
      name: `${METRIC_PREFIX}shard_position`,
      help: 'Highest seq written on this node (its replication position).',
      registers: [registry],
      collect () { this.set(position()) }
    })
  }
}

/** The whole node's metrics text: the aggregated workers (or the in-process server's registry) plus the supervisor's own. */
export async function nodeMetricsText (m: SupervisorMetrics, served?: Registry): Promise<string> {
  const [workers, own] = await Promise.all([served?.metrics() ?? m.aggregator?.clusterMetrics() ?? '', m.registry.metrics()])
  return `${workers}\n${own}`
}
