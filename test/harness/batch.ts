import { BATCH_PATH } from '../../src/protocol/wire'
import type { HttpClient, HttpResponse } from './http'
import { ringOf } from './rebalance'
import type { ClusterView } from '../../src/protocol/cluster-view'

/**
 * Helpers for batch tests: POST /batch raw (so tests send exactly the bytes they mean),
 * the result shape on the wire, and keys picked per owner group from the published map.
 */

export interface WireOp {
  op: string
  key: string
  value?: string
  contentType?: string
  ifMatch?: string
  ifNoneMatch?: string
}

export interface WireResult {
  status: number
  etag?: string
  contentType?: string
  value?: string
  error?: string
  message?: string
  current?: string | null
  [extra: string]: unknown
}

export async function postBatch (http: HttpClient, baseUrl: string, ops: WireOp[] | string, timeoutMs = 30_000): Promise<HttpResponse> {
  const body = typeof ops === 'string' ? ops : JSON.stringify({ ops })
  return await http.request('POST', baseUrl + BATCH_PATH, { body, headers: { 'content-type': 'application/json' }, timeoutMs })
}

/** POSTs a batch that must be accepted; returns its results. */
export async function runBatch (http: HttpClient, baseUrl: string, ops: WireOp[]): Promise<WireResult[]> {
  const res = await postBatch(http, baseUrl, ops)
  if (res.status !== 200) throw new Error(`POST /batch: ${res.status} ${res.text().slice(0, 300)}`)
  const body = res.json<{ results: WireResult[] }>()
  if (!Array.isArray(body.results) || body.results.length !== ops.length) throw new Error(`POST /batch: want ${ops.length} results, got ${res.text().slice(0, 300)}`)
  return body.results
}

export function b64 (v: string | Buffer): string {
  return (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64')
}

/** `perGroup` keys `${prefix}<n>` owned by each active group of the published map. */
export function keysByGroup (view: ClusterView, prefix: string, perGroup: number): Map<string, string[]> {
  const ring = ringOf(view)
  const out = new Map<string, string[]>(view.groups.filter((g) => g.state === 'active').map((g) => [g.id, []]))
  for (let n = 0; [...out.values()].some((l) => l.length < perGroup); n++) {
    if (n > 100_000) throw new Error('could not find keys for every group')
    const key = `${prefix}${n}`
    const list = out.get(ring.ownerOf(key) ?? '')
    if (list !== undefined && list.length < perGroup) list.push(key)
  }
  return out
}

/** `rounds` rounds of `width` concurrent calls of `call(i)` (i counts across rounds), so a coalescer sees many ops per turn. */
export async function concurrentRounds<T> (rounds: number, width: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  for (let r = 0; r < rounds; r++) out.push(...await Promise.all(Array.from({ length: width }, async (_, i) => await call(r * width + i))))
  return out
}
