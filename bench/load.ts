import autocannon from 'autocannon'
import { LatencySamples } from './latency'

/**
 * One measured scenario: a fixed number of connections (closed loop, no pipelining)
 * sending one kind of request for a fixed time, each request to a key drawn at random
 * from the scenario's key set. autocannon counts, times and buckets the responses.
 */

export interface Scenario {
  name: string
  /** What is being measured, for the table (e.g. "router, 3 groups"). */
  target: string
  url: string
  method: 'GET' | 'PUT'
  /** Request paths, already percent-encoded (kvPath). */
  paths: readonly string[]
  body?: Buffer
  headers?: Record<string, string>
}

export interface LoadSettings {
  connections: number
  durationS: number
}

export interface ScenarioResult {
  name: string
  target: string
  url: string
  method: 'GET' | 'PUT'
  keys: number
  connections: number
  durationS: number
  requests: number
  /** autocannon's mean of per-second request counts. */
  reqPerSec: number
  /** Of 2xx responses, exact (sub-millisecond) from every response. */
  latencyMs: { p50: number, p90: number, p99: number, avg: number, max: number }
  /** Connection errors, including timeouts. */
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  /** The slowest 2xx response: when it was sent (ms since the epoch) and how long it took. */
  slowest: { sentAt: number, ms: number } | undefined
}

/** Lets a signal handler abort the load that is running right now. */
export interface Stoppable { stop(): void }

export function runScenario (scenario: Scenario, settings: LoadSettings, onStart?: (running: Stoppable) => void): Promise<ScenarioResult> {
  const { paths } = scenario
  if (paths.length === 0) throw new Error(`${scenario.name}: no keys to request`)
  const headers = { ...scenario.headers }
  if (scenario.body !== undefined) headers['content-type'] ??= 'application/octet-stream'

  const samples = new LatencySamples()
  let slowest: ScenarioResult['slowest']
  return new Promise((resolve, reject) => {
    const instance = autocannon({
      url: scenario.url,
      connections: settings.connections,
      pipelining: 1,
      duration: settings.durationS,
      timeout: 10,
      requests: [{
        method: scenario.method,
        headers,
        ...(scenario.body === undefined ? {} : { body: scenario.body }),
        // Rebuilt for every request: a uniformly random key, so load spreads over the
        // key set (and, routed, over the groups) instead of hammering one row.
        setupRequest: (req) => ({ ...req, path: paths[Math.floor(Math.random() * paths.length)] as string })
      }]
    }, (err: unknown, result: autocannon.Result) => {
      if (err !== null && err !== undefined) {
        reject(err instanceof Error ? err : new Error(String(err)))
        return
      }
      const statusCodes: Record<string, number> = {}
      const lat = samples.summary([50, 90, 99])
      for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count ?? 0
      resolve({
        name: scenario.name,
        target: scenario.target,
        url: scenario.url,
        method: scenario.method,
        keys: paths.length,
        connections: settings.connections,
        durationS: result.duration,
        requests: result.requests.total,
        reqPerSec: result.requests.average,
        latencyMs: {
          p50: lat.byPercentile.get(50) ?? Number.NaN,
          p90: lat.byPercentile.get(90) ?? Number.NaN,
          p99: lat.byPercentile.get(99) ?? Number.NaN,
          avg: lat.avg,
          max: lat.max
        },
        errors: result.errors,
        timeouts: result.timeouts,
        non2xx: result.non2xx,
        statusCodes,
        slowest
      })
    })
    // Like autocannon's own histogram, only 2xx responses count: a fast error must not flatter latency.
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode < 200 || statusCode >= 300) return
      samples.add(responseTime)
      if (slowest === undefined || responseTime > slowest.ms) slowest = { sentAt: Date.now() - responseTime, ms: responseTime }
    })
    onStart?.(instance)
  })
}
