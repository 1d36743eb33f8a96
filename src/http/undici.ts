import type * as Undici from 'undici'

/**
 * The parts of undici shardkv uses (dispatchers, `request`, `buildConnector`), loaded
 * without undici's index. The index also loads fetch, WebSocket, EventSource, the cache
 * stores, the interceptors and the mock agents, and its cookie helpers read
 * `globalThis.Headers`, which makes Node load its own bundled copy of undici too: in a
 * shard node, a router or a coordinator that was 7 MB of memory and 70 ms of its start,
 * for nothing it calls. Every module imports undici's values from here (types may still
 * come from 'undici': a type-only import loads nothing); the unit test checks that these
 * are undici's own classes and that Node's copy stays unloaded.
 */

const dispatcherClass = require('undici/lib/dispatcher/dispatcher') as { prototype: object }
// What undici's index does first: the request API (`dispatcher.request()`, ...) on every dispatcher.
Object.assign(dispatcherClass.prototype, require('undici/lib/api') as object)
const { getGlobalDispatcher } = require('undici/lib/global') as { getGlobalDispatcher: typeof Undici.getGlobalDispatcher }
const { parseURL, parseOrigin } = require('undici/lib/core/util') as { parseURL: (url: unknown) => URL, parseOrigin: (url: unknown) => URL }
const { InvalidArgumentError } = require('undici/lib/core/errors') as { InvalidArgumentError: typeof Undici.errors.InvalidArgumentError }

export const Agent = require('undici/lib/dispatcher/agent') as typeof Undici.Agent
export type Agent = Undici.Agent
export type AgentOptions = Undici.Agent.Options
export const Pool = require('undici/lib/dispatcher/pool') as typeof Undici.Pool
export type Pool = Undici.Pool
export type PoolOptions = Undici.Pool.Options
export const Client = require('undici/lib/dispatcher/client') as typeof Undici.Client
export type Client = Undici.Client
export const buildConnector = require('undici/lib/core/connect') as typeof Undici.buildConnector
export type { Dispatcher } from 'undici'

type RequestOptions = NonNullable<Parameters<typeof Undici.request>[1]>

/**
 * undici's top-level `request(url, options)`, as its index builds it: the URL (or
 * `options.path` on the URL's origin) becomes the origin and path of a
 * `dispatcher.request()` on `options.dispatcher`, else on the global dispatcher.
 */
export const request = (async (url: string | URL, options?: RequestOptions) => {
  if (typeof url !== 'string' && !(url instanceof URL)) throw new InvalidArgumentError('invalid url')
  if (options != null && typeof options !== 'object') throw new InvalidArgumentError('invalid opts')
  const opts: RequestOptions & { path?: unknown, agent?: unknown } = options ?? {}
  let target: URL
  if (opts.path != null) {
    if (typeof opts.path !== 'string') throw new InvalidArgumentError('invalid opts.path')
    target = new URL(parseOrigin(url).origin + (opts.path.startsWith('/') ? opts.path : `/${opts.path}`))
  } else {
    target = parseURL(url)
  }
  if (opts.agent !== undefined) throw new InvalidArgumentError('unsupported opts.agent. Did you mean opts.client?')
  const { dispatcher = getGlobalDispatcher(), ...rest } = opts
  return await dispatcher.request({
    ...rest,
    origin: target.origin,
    path: target.search !== '' ? `${target.pathname}${target.search}` : target.pathname,
    method: rest.method ?? (Boolean(rest.body) ? 'PUT' : 'GET')
  })
}) as typeof Undici.request
