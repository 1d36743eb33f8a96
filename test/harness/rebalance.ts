import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { launchCoordinator, launchRouter, launchShard, type LaunchedProcess } from '../../src/local/launcher'
import { GroupRing, type RingMember, type RingParams } from '../../src/ring/ring'
import type { RebalanceProgress } from '../../src/membership/rebalance'
import type { ClusterView } from '../../src/protocol/cluster-view'
import { HttpClient, type HttpResponse, type RequestOptions } from './http'
import type { TestCluster } from './cluster'
import { nodeStats, rawRow } from './replication'

export { nodeStats, rawRow }

/**
 * Helpers for the rebalancing tests (test/integration/rebalance-*.test.ts): starting
 * the node of a new group inside a test cluster, the admin API, waiting on a
 * rebalance's phase, bulk reads and writes, and the placement check "every key lives
 * only on its owner". Placement is computed from the map the router publishes
 * (GET /cluster) with the same GroupRing the parts use, so these checks assume
 * nothing about how the router or the nodes decide ownership.
 */

export type Phase = RebalanceProgress['phase']

export const PHASE_ORDER: readonly Phase[] = ['fencing', 'copying', 'settling', 'purging', 'finishing', 'done']

export async function clusterView (http: HttpClient, routerUrl: string): Promise<ClusterView> {
  return await http.getJson<ClusterView>(`${routerUrl}/cluster`)
}

/** The current ring of a published map: its active groups (draining ones are leaving). */
export function ringOf (view: Pick<ClusterView, 'groups' | 'ring'>): GroupRing {
  return new GroupRing(view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight })), view.ring)
}

export function membersOf (view: Pick<ClusterView, 'groups'>): RingMember[] {
  return view.groups.filter((g) => g.state === 'active').map((g) => ({ id: g.id, weight: g.weight }))
}

export function primaryOf (view: Pick<ClusterView, 'groups'>, group: string): string {
  const url = view.groups.find((g) => g.id === group)?.nodes.find((n) => n.role === 'primary')?.url
  if (url === undefined) throw new Error(`group ${group} has no primary in the map`)
  return url
}

/** Every node url of the map, with its group. */
export function nodesOf (view: Pick<ClusterView, 'groups'>): Array<{ group: string, url: string, role: string }> {
  return view.groups.flatMap((g) => g.nodes.map((n) => ({ group: g.id, url: n.url, role: n.role })))
}

/**
 * Starts the node of a new group inside the cluster's temp dir; the cluster's teardown
 * stops it by PID (it is added to `c.launched`).
 */
export async function startGroupNode (c: TestCluster, group: string, opts: { workers?: number, dataDir?: string, nodeId?: string, extraArgs?: string[] } = {}): Promise<LaunchedProcess> {
  const nodeId = opts.nodeId ?? `n-${group}`
  const p = await launchShard({
    name: nodeId,
    dataDir: opts.dataDir ?? join(c.tmp, nodeId === `n-${group}` ? group : nodeId),
    port: 0,
    workers: opts.workers ?? 1,
    nodeId,
    group,
    synchronous: 'NORMAL',
    env: { SHARDKV_LOG_LEVEL: 'info' },
    extraArgs: opts.extraArgs,
    readyTimeoutMs: 60_000
  })
  c.launched.push(p)
  await c.http.getJson(`${p.url}/healthz`)
  return p
}

/** Starts a coordinator (again) on a given data dir and port; retries a port the kernel has not released yet. */
export async function startCoordinatorAt (c: TestCluster, opts: { name: string, dataDir: string, port?: number, extraArgs?: string[] }): Promise<LaunchedProcess> {
  let lastErr: unknown
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const p = await launchCoordinator({
        name: opts.name,
        dataDir: opts.dataDir,
        port: opts.port ?? 0,
        env: { SHARDKV_LOG_LEVEL: 'info' },
        extraArgs: opts.extraArgs,
        readyTimeoutMs: 60_000
      })
      c.launched.push(p)
      return p
    } catch (err) {
      lastErr = err
      if (opts.port === undefined || opts.port === 0 || !String((err as Error).message).includes('EADDRINUSE')) throw err
      await sleep(300)
    }
  }
  throw lastErr
}

/** Starts one more router, following the coordinator at `coordinator`. */
export async function startRouterFor (c: TestCluster, opts: { name: string, coordinator: string, extraArgs?: string[] }): Promise<LaunchedProcess> {
  const p = await launchRouter({ name: opts.name, port: 0, coordinator: opts.coordinator, env: { SHARDKV_LOG_LEVEL: 'info' }, extraArgs: opts.extraArgs, readyTimeoutMs: 60_000 })
  c.launched.push(p)
  return p
}

export interface Reply { status: number, body: any, contentType: string | undefined, text: string }

function reply (res: HttpResponse): Reply {
  const text = res.text()
  let body: unknown
  try { body = text === '' ? undefined : JSON.parse(text) } catch { body = undefined }
  return { status: res.status, body, contentType: res.header('content-type'), text }
}

/** One admin call, raw: status and parsed JSON body (never throws on an HTTP status). */
export async function admin (http: HttpClient, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<Reply> {
  const opts: RequestOptions = {}
  if (body !== undefined) {
    opts.body = typeof body === 'string' ? body : JSON.stringify(body)
    opts.headers = { 'content-type': 'application/json' }
  }
  return reply(await http.request(method, url, opts))
}

export async function addGroup (http: HttpClient, routerUrl: string, spec: { id: string, url: string, weight?: number }): Promise<Reply> {
  return await admin(http, 'POST', `${routerUrl}/admin/groups`, { weight: 1, ...spec })
}

export async function removeGroup (http: HttpClient, routerUrl: string, id: string): Promise<Reply> {
  return await admin(http, 'DELETE', `${routerUrl}/admin/groups/${encodeURIComponent(id)}`)
}

export async function rebalanceProgress (http: HttpClient, routerUrl: string): Promise<RebalanceProgress | null> {
  return (await http.getJson<{ rebalance: RebalanceProgress | null }>(`${routerUrl}/admin/rebalance`)).rebalance
}

/**
 * Polls GET /admin/rebalance (every 50 ms) until `pred` holds. Connection errors are
 * tolerated (the router may be restarting). `seen` collects every phase observed.
 */
export async function waitForRebalance (
  http: HttpClient, routerUrl: string, pred: (p: RebalanceProgress) => boolean,
  opts: { timeoutMs?: number, seen?: Set<string>, what?: string } = {}
): Promise<RebalanceProgress> {
  const timeoutMs = opts.timeoutMs ?? 60_000
  const deadline = Date.now() + timeoutMs
  let last: RebalanceProgress | null | undefined
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      last = await rebalanceProgress(http, routerUrl)
      if (last !== null) opts.seen?.add(last.phase)
      if (last !== null && pred(last)) return last
    } catch (err) {
      lastErr = err
    }
    await sleep(50)
  }
  throw new Error(`the rebalance did not reach ${opts.what ?? 'the expected state'} within ${timeoutMs} ms; last progress: ${JSON.stringify(last)}${lastErr === undefined ? '' : `; last error: ${String(lastErr)}`}`)
}

/** Runs `fn` over `items` with at most `concurrency` at a time. */
export async function pool<T> (items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

/** PUTs every key (value from `valueOf`) through `baseUrl`; throws on the first non-2xx. Returns each key's ETag. */
export async function preload (http: HttpClient, baseUrl: string, keys: readonly string[], valueOf: (key: string) => string, concurrency = 16): Promise<Map<string, string>> {
  const etags = new Map<string, string>()
  await pool(keys, concurrency, async (key) => {
    const res = await http.put(baseUrl, key, valueOf(key), { 'content-type': 'text/plain' })
    if (res.status !== 201 && res.status !== 200) throw new Error(`preload PUT ${key}: ${res.status} ${res.text().slice(0, 200)}`)
    etags.set(key, res.header('etag') ?? '')
  })
  return etags
}

/**
 * GETs every key through `baseUrl`: its value, or null for 404. A few retries on
 * connection errors and 5xx (the question is what the store holds); other statuses
 * and persistent failures are returned as errors.
 */
export async function readAll (http: HttpClient, baseUrl: string, keys: readonly string[], concurrency = 16): Promise<{ values: Map<string, string | null>, errors: string[] }> {
  const values = new Map<string, string | null>()
  const errors: string[] = []
  await pool(keys, concurrency, async (key) => {
    let last = ''
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const res = await http.get(baseUrl, key)
        if (res.status === 200) { values.set(key, res.text()); return }
        if (res.status === 404) { values.set(key, null); return }
        last = `status ${res.status} ${res.text().slice(0, 200)}`
        if (res.status < 500) break
      } catch (err) {
        last = String(err)
      }
      await sleep(200 * (attempt + 1))
    }
    errors.push(`${key}: ${last}`)
  })
  return { values, errors }
}


/** Deterministic sample of up to n items. */
export function sample<T> (items: readonly T[], n: number): T[] {
  if (items.length <= n) return [...items]
  const step = items.length / n
  return Array.from({ length: n }, (_, i) => items[Math.floor(i * step)]!)
}

export interface PlacementOptions {
  /** Nodes no longer in the map (a removed group's): they must hold no live key. */
  retiredNodes?: string[]
  /** Keys whose direct reads and raw rows are checked at every node (default: a sample of 150 of all keys). */
  sampleSize?: number
}

/**
 * "Every key lives only on its owner", against the published map `view` (settled):
 *  - each node's live-key count (/internal/stats) equals the number of live keys the
 *    ring gives its group, so no live copy is left behind on an old owner and none is
 *    missing; the counts add up to the number of live keys;
 *  - for a sample of keys (live and deleted): a GET straight to a node that does not
 *    own the key is refused with 421 misdirected, the owner answers with the value,
 *    and no non-owner holds any row for it (not even a tombstone).
 * `values` is what the router returned for every key (null: absent).
 */
export async function checkPlacement (t: Test, http: HttpClient, view: ClusterView, values: Map<string, string | null>, opts: PlacementOptions = {}): Promise<void> {
  t.equal(view.handover, undefined, 'the map is settled (no handover)')
  const ring = ringOf(view)
  const live = [...values].filter(([, v]) => v !== null).map(([k]) => k)
  const expected = new Map<string, number>()
  for (const key of live) {
    const owner = ring.ownerOf(key) ?? '?'
    expected.set(owner, (expected.get(owner) ?? 0) + 1)
  }
  let sum = 0
  const perNode: string[] = []
  // Every node holds its group's keys (a replica as its primary does); the sum counts each group once.
  for (const { group, url, role } of nodesOf(view)) {
    const s = await nodeStats(http, url)
    if (role === 'primary') sum += s.keys
    perNode.push(`${group}${role === 'primary' ? '' : ` ${role}`}=${s.keys}`)
    t.equal(s.keys, expected.get(group) ?? 0, `${group} (${url}) holds exactly the ${expected.get(group) ?? 0} live keys it owns (stats: ${JSON.stringify(s)})`)
  }
  for (const url of opts.retiredNodes ?? []) {
    const s = await nodeStats(http, url)
    sum += s.keys
    t.equal(s.keys, 0, `retired node ${url} holds no live key (stats: ${JSON.stringify(s)})`)
  }
  t.equal(sum, live.length, `live keys over all nodes (${perNode.join(' ')}) add up to the ${live.length} live keys read through the router`)

  // Clients read from primaries: those answer for their keys and refuse (421) the others'.
  const nodes = nodesOf(view).filter((n) => n.role === 'primary')
  const keys = sample([...values.keys()], opts.sampleSize ?? 150)
  const wrong: string[] = []
  await pool(keys, 8, async (key) => {
    const owner = ring.ownerOf(key)
    for (const { group, url } of nodes) {
      const res = await http.get(url, key)
      if (group === owner) {
        const want = values.get(key)
        const got = res.status === 200 ? res.text() : res.status === 404 ? null : `status ${res.status}`
        if (got !== want) wrong.push(`${key}: owner ${group} answered ${JSON.stringify(got)}, the router ${JSON.stringify(want)}`)
      } else {
        const body = res.status === 421 ? res.json<{ error?: string }>() : undefined
        if (res.status !== 421 || body?.error !== 'misdirected') wrong.push(`${key}: non-owner ${group} answered ${res.status} ${res.text().slice(0, 120)} (owner ${owner ?? '?'})`)
        const row = await rawRow(http, url, key)
        if (row !== undefined) wrong.push(`${key}: non-owner ${group} still holds a row ${JSON.stringify(row)} (owner ${owner ?? '?'})`)
      }
    }
    for (const url of opts.retiredNodes ?? []) {
      const res = await http.get(url, key)
      if (res.status !== 421) wrong.push(`${key}: retired node ${url} answered ${res.status} ${res.text().slice(0, 120)}`)
      const row = await rawRow(http, url, key)
      if (row !== undefined) wrong.push(`${key}: retired node ${url} still holds a row ${JSON.stringify(row)}`)
    }
  })
  t.same(wrong, [], `${keys.length} sampled keys: the owner answers with the router's value, every other node answers 421 and holds no row`)
}

/**
 * An HttpClient that waits out a router that is down: a request whose connection is
 * refused was never delivered, so it is retried (for up to `refusedRetryMs`) and
 * counted in `refusedRetries`; every other error is left to the caller (a request in
 * flight when the router died has an unknown outcome).
 */
export class RetryingHttpClient extends HttpClient {
  refusedRetries = 0
  /** Requests that needed at least one refused-connection retry. */
  requestsDelayed = 0
  constructor (private readonly refusedRetryMs = 30_000, opts: { connections?: number } = {}) {
    super(opts)
  }

  override async request (method: string, url: string, opts: RequestOptions = {}): Promise<HttpResponse> {
    const deadline = Date.now() + this.refusedRetryMs
    let delayed = false
    for (;;) {
      try {
        return await super.request(method, url, opts)
      } catch (err) {
        if ((err as { code?: string }).code !== 'ECONNREFUSED' || Date.now() > deadline) throw err
        this.refusedRetries++
        if (!delayed) { delayed = true; this.requestsDelayed++ }
        await sleep(50)
      }
    }
  }
}

/** SIGKILL a launched process and wait for it to be gone. */
export async function killHard (p: LaunchedProcess): Promise<void> {
  p.signal('SIGKILL')
  await p.exited
}

export function readJsonFile<T = any> (path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T
}

/** Keys named `${prefix}/${i}` for i in [0, n). */
export function keyRange (prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}/${i}`)
}
