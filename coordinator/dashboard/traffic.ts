import { request, type Dispatcher } from '../../src/http/undici'
import { METRIC_PREFIX, METRICS_PATH } from '../../src/protocol/wire'
import type { DashboardTraffic, TrafficSample } from '../../src/protocol/dashboard'
import { readCapped } from '../../src/http/capped-body'
import { peerDispatcher, type PeerCredentials } from '../../src/auth/peer'

/**
 * Request rates and p99 latencies for the dashboard, from the metrics that exist already:
 * the routers' request histograms (every router that follows this coordinator's map,
 * summed), and each group primary's /metrics (its served keys
 * and its request histogram). The router does not time requests per group (its labels are
 * method and status class, to keep the hot path and the series count small), so a group's
 * numbers are its primary's view: key operations it served (routed, direct and batched
 * alike) and how long its workers took. Both are deltas between two samples about a second
 * apart, taken only while a dashboard is watching.
 */

const ROUTER_HISTOGRAM = `${METRIC_PREFIX}router_http_request_duration_seconds`
const ROUTER_COUNT = `${ROUTER_HISTOGRAM}_count`
const SHARD_HISTOGRAM = `${METRIC_PREFIX}shard_http_request_duration_seconds`
const SHARD_OPS = new Set([`${METRIC_PREFIX}shard_reads_total`, `${METRIC_PREFIX}shard_writes_total`])
/** A node's aggregated /metrics text is tens of KiB; anything past this is not a shard node's. */
const SCRAPE_MAX_BYTES = 1024 * 1024
const SCRAPE_TIMEOUT_MS = 900

export interface MetricSample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Cumulative bucket counts by upper bound (Infinity for `+Inf`). */
export type Buckets = Map<number, number>

/** What one sample of a source holds: when, a monotonic count, and its latency buckets. */
export interface Reading {
  atMs: number
  count: number
  buckets: Buckets
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** The samples of the Prometheus text format whose metric name `wanted` accepts (comments and others skipped). */
export function parsePrometheus (text: string, wanted: (name: string) => boolean): MetricSample[] {
  const out: MetricSample[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (m === null || !wanted(m[1] as string)) continue
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = l[2] as string
    const value = Number(m[3])
    if (!Number.isNaN(value)) out.push({ name: m[1] as string, labels, value })
  }
  return out
}

/** The `<histogram>_bucket` samples summed over every other label, by upper bound. */
export function bucketsOf (samples: readonly MetricSample[], histogram: string): Buckets {
  const out: Buckets = new Map()
  for (const s of samples) {
    if (s.name !== `${histogram}_bucket` || s.labels.le === undefined) continue
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
    if (!Number.isNaN(le)) out.set(le, (out.get(le) ?? 0) + s.value)
  }
  return out
}

/**
 * The q-quantile of the observations between two cumulative bucket sets, as Prometheus's
 * histogram_quantile estimates it: linear within the bucket the rank falls in, and the
 * highest finite bound when it falls in `+Inf`. Null when nothing was observed.
 */
export function quantile (before: Buckets, after: Buckets, q: number): number | null {
  const bounds = [...after.keys()].sort((a, b) => a - b)
  const delta = bounds.map((le) => Math.max(0, (after.get(le) ?? 0) - (before.get(le) ?? 0)))
  const total = delta[delta.length - 1] ?? 0
  if (total <= 0) return null
  const rank = q * total
  let lower = 0
  let below = 0
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] as number
    const count = delta[i] as number
    if (count >= rank) {
      if (upper === Infinity) return i === 0 ? null : bounds[i - 1] as number
      return count === below ? upper : lower + (upper - lower) * (rank - below) / (count - below)
    }
    lower = upper
    below = count
  }
  return bounds.length > 1 ? bounds[bounds.length - 2] as number : null
}

/** The buckets without one observation of `seconds` (every bound it falls under). */
export function withoutObservation (buckets: Buckets, seconds: number): Buckets {
  const out: Buckets = new Map()
  for (const [le, count] of buckets) out.set(le, le >= seconds ? Math.max(0, count - 1) : count)
  return out
}

/**
 * Rate and p99 between two readings of one source; null when the counters went back (a
 * restart). No p99 without counted operations: what the histogram then holds is health
 * checks and scrapes, not the traffic it is shown for.
 */
export function trafficBetween (before: Reading, after: Reading): TrafficSample | null {
  const seconds = (after.atMs - before.atMs) / 1000
  if (seconds <= 0 || after.count < before.count) return null
  const p99 = after.count > before.count ? quantile(before.buckets, after.buckets, 0.99) : null
  return { perSecond: Math.round((after.count - before.count) / seconds * 10) / 10, p99Ms: p99 === null ? null : Math.round(p99 * 10_000) / 10 }
}

export function routerReading (text: string, atMs: number): Reading {
  const samples = parsePrometheus(text, (n) => n.startsWith(ROUTER_HISTOGRAM))
  const count = samples.filter((s) => s.name === ROUTER_COUNT).reduce((sum, s) => sum + s.value, 0)
  return { atMs, count, buckets: bucketsOf(samples, ROUTER_HISTOGRAM) }
}

/** Several sources' readings as one: counts and buckets added, at the latest time. */
export function sumReadings (readings: readonly Reading[]): Reading {
  const buckets: Buckets = new Map()
  for (const r of readings) for (const [le, n] of r.buckets) buckets.set(le, (buckets.get(le) ?? 0) + n)
  return { atMs: Math.max(...readings.map((r) => r.atMs)), count: readings.reduce((sum, r) => sum + r.count, 0), buckets }
}

export function shardReading (text: string, atMs: number): Reading {
  const samples = parsePrometheus(text, (n) => SHARD_OPS.has(n) || n.startsWith(SHARD_HISTOGRAM))
  const count = samples.filter((s) => SHARD_OPS.has(s.name)).reduce((sum, s) => sum + s.value, 0)
  return { atMs, count, buckets: bucketsOf(samples, SHARD_HISTOGRAM) }
}

/** Keeps the previous reading of every source and turns the next one into a TrafficSample. */
export class TrafficSampler {
  private readonly previous = new Map<string, Reading>()
  /** How long the last scrape of each node took, as measured here. */
  private readonly scrapeSeconds = new Map<string, number>()
  private readonly agent: Dispatcher

  /** `routers`: the client URLs of the routers to sum. */
  constructor (private readonly routers: () => readonly string[], credentials: PeerCredentials) {
    // Nodes' data ports and routers answer /metrics to the cluster secret (the coordinator is a peer).
    this.agent = peerDispatcher(credentials, { connections: 2, keepAliveTimeout: 5000 })
  }

  /** `primaries`: group id -> its primary's data URL. */
  async sample (primaries: ReadonlyMap<string, string>): Promise<DashboardTraffic> {
    const [router, ...groups] = await Promise.all([
      this.routersReading().then((reading) => reading === null ? null : this.step('router', reading)),
      ...[...primaries].map(async ([id, url]) => [id, await this.scrapeShard(url).catch(() => null)] as const)
    ])
    const live = new Set(['router', ...primaries.values()])
    for (const key of this.previous.keys()) {
      if (!live.has(key)) {
        this.previous.delete(key)
        this.scrapeSeconds.delete(key)
      }
    }
    return { router: router ?? null, groups: Object.fromEntries(groups) }
  }

  async close (): Promise<void> {
    await this.agent.close()
  }

  /** `buckets`: what to compare the previous reading's buckets with, when not the reading's own. */
  private step (key: string, reading: Reading, buckets = reading.buckets): TrafficSample | null {
    const before = this.previous.get(key)
    this.previous.set(key, reading)
    return before === undefined ? null : trafficBetween(before, { ...reading, buckets })
  }

  /** Every router's histogram summed (null when none answered): one reading for the dashboard's router line. */
  private async routersReading (): Promise<Reading | null> {
    const readings = (await Promise.all(this.routers().map(async (url) => {
      const res = await request(url + METRICS_PATH, { dispatcher: this.agent, headersTimeout: SCRAPE_TIMEOUT_MS, bodyTimeout: SCRAPE_TIMEOUT_MS })
      const body = await readCapped(res, SCRAPE_MAX_BYTES, url)
      return res.statusCode === 200 ? routerReading(body.toString('utf8'), Date.now()) : null
    }).map(async (p) => await p.catch(() => null)))).filter((r): r is Reading => r !== null)
    return readings.length === 0 ? null : sumReadings(readings)
  }

  /**
   * A node's /metrics is itself timed in its request histogram, and it is slow (the
   * supervisor gathers every worker's registry): a scrape every second would be the p99
   * of a lightly loaded group. The interval since the previous reading holds exactly one
   * scrape, the previous one (timed when its answer was sent): it is taken out again, at
   * the duration this side measured.
   */
  private async scrapeShard (url: string): Promise<TrafficSample | null> {
    const started = performance.now()
    const res = await request(url + METRICS_PATH, { dispatcher: this.agent, headersTimeout: SCRAPE_TIMEOUT_MS, bodyTimeout: SCRAPE_TIMEOUT_MS })
    const body = await readCapped(res, SCRAPE_MAX_BYTES, url)
    if (res.statusCode !== 200) throw new Error(`${url}${METRICS_PATH} answered ${res.statusCode}`)
    const reading = shardReading(body.toString('utf8'), Date.now())
    const previousScrape = this.scrapeSeconds.get(url)
    this.scrapeSeconds.set(url, (performance.now() - started) / 1000)
    // Only this interval holds that scrape: the reading is kept whole for the next one.
    return this.step(url, reading, previousScrape === undefined ? undefined : withoutObservation(reading.buckets, previousScrape))
  }
}
