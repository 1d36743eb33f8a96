import { Agent } from 'undici'
import { kvPath } from '../../src/protocol/key'

/**
 * A small HTTP client for tests, over undici. Every request goes to a loopback
 * address (or a host of a test network the test made, ./netns.ts) only: a test that
 * builds a URL wrongly fails instead of sending traffic anywhere else.
 */

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** A single header value (the first one when repeated). */
  header: (name: string) => string | undefined
  text: () => string
  json: <T = any>() => T
}

export interface RequestOptions {
  headers?: Record<string, string>
  body?: Buffer | string
  /** Whole-request timeout (headers and body), default 15 s. */
  timeoutMs?: number
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/**
 * Address prefixes ('10.213.7.') of the test networks that are up (./netns.ts): namespaces on
 * a private bridge of this machine that run only the test's own processes, so traffic to
 * them never leaves the machine either.
 */
const testNetworks = new Set<string>()

/** Allows traffic to a test network's hosts until the returned function is called (its teardown). */
export function allowTestNetwork (prefix: string): () => void {
  testNetworks.add(prefix)
  return () => { testNetworks.delete(prefix) }
}

function onTestNetwork (hostname: string): boolean {
  for (const prefix of testNetworks) if (hostname.startsWith(prefix)) return true
  return false
}

export function assertLoopback (url: string | URL): URL {
  const u = typeof url === 'string' ? new URL(url) : url
  if (u.protocol !== 'http:' || !(LOOPBACK.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname) || onTestNetwork(u.hostname))) {
    throw new Error(`test traffic must go to 127.0.0.1 only, refused ${u.href}`)
  }
  return u
}

export class HttpClient {
  private readonly agent: Agent
  private closed = false
  private readonly defaultHeaders: (() => Record<string, string>) | undefined

  /**
   * `headers`: what every request carries under its own headers (a bearer token), asked
   * per request because a test may learn it after making the client (npm start writes it).
   */
  constructor (opts: { connections?: number, headers?: () => Record<string, string> } = {}) {
    this.defaultHeaders = opts.headers
    this.agent = new Agent({
      connections: opts.connections ?? 32,
      keepAliveTimeout: 4_000,
      // A restarted server closes idle sockets; never pipeline onto a half-dead one.
      pipelining: 1
    })
  }

  async request (method: string, url: string, opts: RequestOptions = {}): Promise<HttpResponse> {
    if (this.closed) throw new Error('HttpClient is closed')
    // Split by hand: new URL() would resolve dot segments and re-encode the path,
    // and tests need to send exactly the bytes they mean (e.g. /kv/.. or /kv/%zz).
    const m = /^(http:\/\/[^/?#]+)(.*)$/.exec(url)
    if (m === null) throw new Error(`not an http url: ${url}`)
    const u = assertLoopback(m[1]!)
    const path = m[2] === '' ? '/' : m[2]!
    const timeoutMs = opts.timeoutMs ?? 15_000
    const res = await this.agent.request({
      origin: u.origin,
      path,
      method: method as any,
      headers: this.defaultHeaders === undefined ? opts.headers : { ...this.defaultHeaders(), ...opts.headers },
      body: opts.body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs)
    })
    const body = Buffer.from(await res.body.arrayBuffer())
    const headers = res.headers as Record<string, string | string[] | undefined>
    return {
      status: res.statusCode,
      headers,
      body,
      header: (name) => {
        const v = headers[name.toLowerCase()]
        return Array.isArray(v) ? v[0] : v
      },
      text: () => body.toString('utf8'),
      json: <T>() => {
        try {
          return JSON.parse(body.toString('utf8')) as T
        } catch {
          throw new Error(`${method} ${path}: status ${res.statusCode}, body is not JSON: ${body.toString('utf8').slice(0, 200)}`)
        }
      }
    }
  }

  get (base: string, key: string, headers?: Record<string, string>): Promise<HttpResponse> {
    return this.request('GET', base + kvPath(key), { headers })
  }

  put (base: string, key: string, body: Buffer | string, headers?: Record<string, string>): Promise<HttpResponse> {
    return this.request('PUT', base + kvPath(key), { body, headers: { 'content-type': 'application/octet-stream', ...headers } })
  }

  del (base: string, key: string, headers?: Record<string, string>): Promise<HttpResponse> {
    return this.request('DELETE', base + kvPath(key), { headers })
  }

  /** GET a JSON document (e.g. /healthz, /cluster); throws unless 200. */
  async getJson<T = any> (url: string): Promise<T> {
    const res = await this.request('GET', url)
    if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${res.text().slice(0, 300)}`)
    return res.json<T>()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.agent.destroy()
  }
}
