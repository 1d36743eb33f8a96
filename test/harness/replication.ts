import type { NodeStats } from '../../src/protocol/node-answers'
import { kvPath } from '../../src/protocol/key'
import { HEADER, INTERNAL, KV_PREFIX, type WireKeyTransfer } from '../../src/protocol/wire'
import { sleep, type ShardHealth } from './cluster'
import type { HttpClient, HttpResponse } from './http'
import type { HistoryChecker } from './checker'

/**
 * Helpers for the replication and failover tests (test/integration/failover*.test.ts,
 * replica-crash, deposed-primary…), on a cluster of startCluster (test/harness/cluster.ts):
 * a node's raw rows and stats from its internal API, data comparisons between the nodes of
 * a group, a probe that measures the time from a kill to the first acknowledged write, and
 * bursts of history-checked writes through the router.
 */

/**
 * Where a node serves its internal API: its peer listener when its /healthz reports one
 * (nodes started by the scripts have one), else its data port. Asked every time: a node
 * restarted by a test may come back on another peer port.
 */
async function internalUrl (http: HttpClient, url: string): Promise<string> {
  const health = await http.getJson<ShardHealth>(`${url}/healthz`)
  if (health.peerPort === undefined) return url
  const u = new URL(url)
  return `${u.protocol}//${u.hostname}:${health.peerPort}`
}

export async function nodeStats (http: HttpClient, url: string): Promise<NodeStats> {
  return await http.getJson<NodeStats>(`${await internalUrl(http, url)}${INTERNAL.stats}`)
}

export interface RawRow { value: string, version: string, deleted: boolean }

/** A key's raw row at a node (tombstones included), or undefined when it holds none. */
export async function rawRow (http: HttpClient, url: string, key: string): Promise<RawRow | undefined> {
  const res = await http.request('GET', `${await internalUrl(http, url)}${INTERNAL.rowPrefix}${kvPath(key).slice(KV_PREFIX.length)}`)
  if (res.status !== 200) throw new Error(`GET /internal/row for ${key} at ${url}: ${res.status} ${res.text().slice(0, 200)}`)
  const row = res.json<WireKeyTransfer>().rows[0]
  if (row === undefined) return undefined
  return { value: Buffer.from(row.value, 'base64').toString('utf8'), version: row.version, deleted: row.deleted === true }
}

/**
 * Waits until the replica's /internal/stats position equals the primary's (no writes
 * should be running), then compares their live-key and tombstone counts and, for each
 * of `keys`, the raw rows (value, version, tombstone flag) on both nodes.
 */
export async function compareReplica (http: HttpClient, primary: string, replica: string, keys: readonly string[], timeoutMs = 20_000): Promise<{ primary: NodeStats, replica: NodeStats, mismatches: string[] }> {
  const deadline = Date.now() + timeoutMs
  let p = await nodeStats(http, primary)
  let r = await nodeStats(http, replica)
  while (r.position !== p.position && Date.now() < deadline) {
    await sleep(100)
    p = await nodeStats(http, primary)
    r = await nodeStats(http, replica)
  }
  const mismatches: string[] = []
  if (r.position !== p.position) mismatches.push(`positions differ: primary ${p.position}, replica ${r.position}`)
  for (const key of keys) {
    const [a, b] = await Promise.all([rawRow(http, primary, key), rawRow(http, replica, key)])
    if (a === undefined && b === undefined) continue
    if (a === undefined || b === undefined || a.version !== b.version || a.deleted !== b.deleted || a.value !== b.value) {
      mismatches.push(`${key}: primary ${JSON.stringify(a)} replica ${JSON.stringify(b)}`)
    }
  }
  return { primary: p, replica: r, mismatches }
}

export interface ProbeResult {
  /** ms from `since` to the first 2xx. */
  ms: number
  attempts: number
  /** Non-2xx answers and errors before it, e.g. "503 unavailable" (counted by kind). */
  failures: Record<string, number>
}

function failureKind (res: HttpResponse | Error): string {
  if (res instanceof Error) return `${res.name}${(res as { code?: string }).code === undefined ? '' : ` ${(res as { code?: string }).code ?? ''}`}`
  let code = ''
  try { code = String(res.json<{ error?: string }>().error ?? '') } catch { /* not JSON */ }
  return `${res.status}${code === '' ? '' : ` ${code}`}`
}

/**
 * Writes unique values to `keys` (round-robin) through the router, one at a time,
 * until one is acknowledged: the time from `since` (e.g. the kill) to that answer.
 * Every write goes to `checker` (started / acked / unknown), so the probe's own writes
 * are verified like the load's.
 */
export async function firstAckedWrite (http: HttpClient, routerUrl: string, keys: readonly string[], since: number, checker: HistoryChecker, opts: { timeoutMs?: number, tag?: string } = {}): Promise<ProbeResult> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000)
  const failures: Record<string, number> = {}
  let attempts = 0
  while (Date.now() < deadline) {
    const key = keys[attempts % keys.length] as string
    const value = `${opts.tag ?? 'probe'}|${key}|${attempts}|${Date.now()}`
    attempts++
    checker.writeStarted(key, value)
    let res: HttpResponse | Error
    try {
      res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 })
    } catch (err) {
      res = err as Error
    }
    if (!(res instanceof Error) && (res.status === 200 || res.status === 201)) {
      checker.writeAcked(key, value)
      return { ms: Date.now() - since, attempts, failures }
    }
    checker.writeUnknown(key, value)
    const kind = failureKind(res)
    failures[kind] = (failures[kind] ?? 0) + 1
    await sleep(10)
  }
  throw new Error(`no write to ${keys[0] ?? '?'}… was acknowledged within ${opts.timeoutMs ?? 60_000} ms (failures: ${JSON.stringify(failures)})`)
}

/** PUTs a unique value to each key at once through the router; every one must be acknowledged. */
export async function ackedBurst (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker, tag: string): Promise<void> {
  const bad: string[] = []
  await Promise.all(keys.map(async (key) => {
    const value = `${tag}|${key}|${Date.now()}`
    checker.writeStarted(key, value)
    try {
      const res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 20_000 })
      if (res.status === 200 || res.status === 201) checker.writeAcked(key, value)
      else { checker.writeUnknown(key, value); bad.push(`${key}: ${res.status} ${res.text().slice(0, 120)}`) }
    } catch (err) {
      checker.writeUnknown(key, value)
      bad.push(`${key}: ${String(err)}`)
    }
  }))
  if (bad.length > 0) throw new Error(`burst writes were not all acknowledged: ${bad.join('; ')}`)
}

/**
 * PUTs a unique value to each key at once through the router without waiting: every
 * write goes to `checker`; `acked()` tells how many were acknowledged so far, `done`
 * settles when all have an answer (or failed).
 */
export function startBurst (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker, tag: string): { acked: () => number, done: Promise<Array<{ key: string, status: number | string }>> } {
  let acked = 0
  const done = Promise.all(keys.map(async (key) => {
    const value = `${tag}|${key}|${Date.now()}`
    checker.writeStarted(key, value)
    try {
      const res = await http.request('PUT', routerUrl + kvPath(key), { body: value, headers: { 'content-type': 'text/plain; charset=utf-8' }, timeoutMs: 30_000 })
      if (res.status === 200 || res.status === 201) { acked++; checker.writeAcked(key, value) } else checker.writeUnknown(key, value)
      return { key, status: res.status }
    } catch (err) {
      checker.writeUnknown(key, value)
      return { key, status: String(err) }
    }
  }))
  return { acked: () => acked, done }
}

/** Reads `keys` through the router into `checker.finalState` (retrying 5xx and errors a few times). */
export async function verifyKeys (http: HttpClient, routerUrl: string, keys: readonly string[], checker: HistoryChecker): Promise<void> {
  for (const key of keys) {
    let got: string | null | { error: string } = { error: 'not read' }
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const res = await http.request('GET', routerUrl + kvPath(key), { timeoutMs: 15_000 })
        if (res.status === 200) { got = res.text(); break }
        if (res.status === 404) { got = null; break }
        got = { error: `status ${res.status} ${res.text().slice(0, 120)}` }
      } catch (err) {
        got = { error: String(err) }
      }
      await sleep(250 * (attempt + 1))
    }
    checker.finalState(key, got)
  }
}

/** Direct request to a shard node, as a router routing by `epoch` would send it. */
export async function directRequest (http: HttpClient, nodeUrl: string, method: 'GET' | 'PUT', key: string, epoch: number, body?: string, timeoutMs = 5000): Promise<HttpResponse | Error> {
  try {
    return await http.request(method, nodeUrl + kvPath(key), {
      ...(body === undefined ? {} : { body }),
      headers: { [HEADER.epoch]: String(epoch), ...(body === undefined ? {} : { 'content-type': 'text/plain; charset=utf-8' }) },
      timeoutMs
    })
  } catch (err) {
    return err as Error
  }
}

export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
