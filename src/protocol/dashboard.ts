import type { ClusterView } from './cluster-view'

/**
 * What the router's dashboard stream (`GET /ui/events`, coordinator/dashboard) sends, declared
 * once: the server builds it, the page (coordinator/dashboard/public/app.js, plain JS: it
 * mirrors these names) and the tests read it.
 *
 * The stream is Server-Sent Events text. Events, in order:
 *   `hello`    once, first: a DashboardViewer (who the page is showing things to);
 *   `snapshot` at once, then on every change and at least every second: a DashboardSnapshot;
 *   `bye`      a DashboardBye, then the server closes: the page connects again at once.
 */

export const DASHBOARD_EVENTS = { hello: 'hello', snapshot: 'snapshot', bye: 'bye' } as const

export interface DashboardViewer {
  /** The token's name; null when the router does not authenticate clients. */
  name: string | null
  /** May call the admin API (true when the router does not authenticate clients: it is open then). */
  admin: boolean
}

export interface DashboardBye {
  /**
   * `lifetime`: streams are re-opened every minute so a revoked token stops seeing data; `closing`: the router
   * stops; `leader-changed`: a router relaying the stream saw another coordinator take over (the page reconnects to it).
   */
  reason: 'lifetime' | 'closing' | 'leader-changed'
}

/** A rate and a latency over the last sample interval (about a second). */
export interface TrafficSample {
  /** Router: requests answered per second. Group: key reads plus writes its primary served per second. */
  perSecond: number
  /** The 99th percentile latency in ms, from histogram buckets (upper-bound estimate); null when nothing was timed. */
  p99Ms: number | null
}

export interface DashboardTraffic {
  /** The router's own requests (its http_request_duration_seconds histogram); null until two samples exist. */
  router: TrafficSample | null
  /** By group id: its primary's served keys and request latency (the node's /metrics); null when it could not be read. */
  groups: Record<string, TrafficSample | null>
}

/** A switchover, failover or replica change the router saw (running or recent). */
export interface DashboardOperation {
  kind: 'switchover' | 'failover' | 'replica'
  group: string
  /** `pending`: a failover waits for the dead primary's lease to run out. */
  state: 'pending' | 'running' | 'done' | 'failed'
  from: string | null
  to: string | null
  /** The group's term once it changed. */
  term: number | null
  startedAt: string
  finishedAt: string | null
  detail: string
}

export interface DashboardSnapshot {
  at: string
  /** `GET /cluster`'s body: the map, every node's health and replication, the rebalance's progress. */
  cluster: ClusterView
  traffic: DashboardTraffic
  /** Running first, then the most recent finished ones. */
  operations: DashboardOperation[]
}
