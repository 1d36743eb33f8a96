import { Pool } from '../src/http/undici'
import { exchange, type RawResponse } from '../src/http/exchange'
import { BATCH_PATH, HEADER } from '../src/protocol/wire'
import { newRequestId } from '../src/protocol/request-id'
import { kvPath } from '../src/protocol/key'
import type { BatchOpWire, BatchResult } from '../src/protocol/batch'
import { pick, type Operation } from './engine'

/**
 * Operations against an HTTP target (router, shard node or nginx) over one kept-alive
 * undici Pool per target with as many connections as load loops, so no request waits for
 * a connection. Every response body is read to the end: a target is measured serving the
 * whole answer, the same for all targets. Requests go through the same lean `exchange`
 * the shardkv client uses, so the load generator spends as little CPU per request on an
 * HTTP target (nginx, router, node) as on the direct client: on a 2-core machine its CPU
 * comes out of the system under test, and unequal costs would skew the ratios.
 */

export class BenchRequestError extends Error {
  readonly code = 'ERR_BENCH_REQUEST'
  constructor (readonly status: number, message: string) {
    super(message)
    this.name = 'BenchRequestError'
  }
}

/** A client token (sent as Bearer on every request) and a CA for an https target. */
export interface TargetCredentials {
  token?: string
  ca?: Buffer
}

export class HttpTarget {
  private readonly pool: Pool
  /** Headers every request carries (the token), built once. */
  private readonly auth: Readonly<Record<string, string>> | undefined

  constructor (readonly url: string, connections: number, credentials: TargetCredentials = {}) {
    this.pool = new Pool(url, { connections, pipelining: 1, ...(credentials.ca === undefined ? {} : { connect: { ca: credentials.ca } }) })
    this.auth = credentials.token === undefined ? undefined : { authorization: `Bearer ${credentials.token}` }
  }

  /** GET a random key; 200 expected. */
  get (keys: readonly string[]): Operation {
    const paths = keys.map(kvPath)
    const headers = this.auth
    return async () => {
      const path = pick(paths)
      this.expect(await exchange(this.pool, { path, method: 'GET', headers }), 'GET', path, 200)
      return 1
    }
  }

  /**
   * PUT a random key; 200 or 201 expected. With `requestIds`, each PUT carries a fresh
   * request id, as every write through a router or the client does (a node records it
   * for exactly-once retries); without, it is a bare write to a node.
   */
  put (keys: readonly string[], value: Buffer, requestIds = false): Operation {
    const paths = keys.map(kvPath)
    const bare = { ...this.auth, 'content-type': 'application/octet-stream' }
    return async () => {
      const path = pick(paths)
      const headers = requestIds ? { ...bare, [HEADER.requestId]: newRequestId() } : bare
      this.expect(await exchange(this.pool, { path, method: 'PUT', body: value, headers }), 'PUT', path, 200, 201)
      return 1
    }
  }

  /** A read or a write, reads with probability `readFraction`. */
  mixed (keys: readonly string[], value: Buffer, readFraction: number): Operation {
    const get = this.get(keys)
    const put = this.put(keys, value)
    return () => Math.random() < readFraction ? get() : put()
  }

  /**
   * POST /batch of `size` random keys (gets, or puts of `value`); every op must succeed.
   * Keys within one batch may repeat: cheaper than sampling without replacement, and the
   * server must handle it anyway.
   */
  batch (kind: 'get' | 'put', keys: readonly string[], size: number, value?: Buffer): Operation {
    const encoded = value?.toString('base64')
    const headers = { ...this.auth, 'content-type': 'application/json' }
    return async () => {
      const ops: BatchOpWire[] = new Array(size)
      for (let i = 0; i < size; i++) {
        ops[i] = kind === 'get' ? { op: 'get', key: pick(keys) } : { op: 'put', key: pick(keys), value: encoded ?? '' }
      }
      const res = await exchange(this.pool, { path: BATCH_PATH, method: 'POST', body: JSON.stringify({ ops }), headers })
      const text = res.body.toString('utf8')
      if (res.status !== 200) throw new BenchRequestError(res.status, `POST ${BATCH_PATH} answered ${res.status}: ${text.slice(0, 200)}`)
      const results = (JSON.parse(text) as { results?: BatchResult[] }).results
      if (!Array.isArray(results) || results.length !== size) throw new BenchRequestError(res.status, `POST ${BATCH_PATH}: expected ${size} results`)
      for (const r of results) {
        const ok = kind === 'get' ? r.status === 200 : r.status === 200 || r.status === 201
        if (!ok) throw new BenchRequestError(r.status, `POST ${BATCH_PATH}: an op answered ${r.status} ${r.error ?? ''}: ${r.message ?? ''}`)
      }
      return size
    }
  }

  close (): Promise<void> {
    return this.pool.close()
  }

  private expect (res: RawResponse, method: string, path: string, ...ok: number[]): void {
    if (ok.includes(res.status)) return
    throw new BenchRequestError(res.status, `${method} ${path} answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`)
  }
}
