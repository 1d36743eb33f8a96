import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { ShardKvError } from '../protocol/errors'
import { BATCH_PATH, CLUSTER_MAP_PATH, CLUSTER_PATH, DASHBOARD, HEADER, HEALTH_PATH, KV_PREFIX, METRICS_PATH, READY_PATH } from '../protocol/wire'
import type { PeerSecret } from './peer'
import { DOCS_PATH, OPENAPI_PATH } from '../protocol/schemas'
import type { RateLimiter } from './rate-limit'
import { authorize, NAME_PATTERN, ROLES, type Action, type Principal, type TokenStore } from './tokens'

/**
 * Who may send a client request, for the router and for shard nodes' data ports alike.
 *
 * A request presents `Authorization: Bearer <token>`; the token names a principal
 * (src/auth/tokens.ts). On a shard node, the cluster secret (src/auth/peer.ts) is also
 * accepted: a router forwarding a client request it has already authorized is a peer
 * with full access, and names the client in `x-shardkv-principal` so the node binds
 * request ids to it. Without a tokens file, clients are not authenticated (as before).
 *
 * Authentication happens before routing (fastify's onRequest hook, or the router's fast
 * path), so a refused request costs no body read; authorization of keys happens where
 * the keys are known (forwardKv, the data API, batch handlers) through `authorizeKey`
 * and `authorizeOps`. Every refusal is a ShardKvError for the one central error handler.
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated principal; null when clients are not authenticated here. */
    principal: Principal | null
  }
}

export interface ClientGuardOptions {
  /** Client tokens; undefined: clients are not authenticated. */
  tokens?: TokenStore
  /** Shard nodes only: the cluster secret, whose holders (routers) are full-access peers. */
  peer?: PeerSecret
  /** The router only: per-address and per-token limits. */
  limits?: RateLimiter
}

const BEARER = 'bearer '
const ALL_ROLES = new Set(ROLES)
/** A peer forwarding for no named principal (a router without a tokens file). */
const ANONYMOUS_PEER: Principal = Object.freeze({ name: '', roles: ALL_ROLES, prefix: undefined })
const CHALLENGE = Object.freeze({ 'www-authenticate': 'Bearer' })
const CHALLENGE_INVALID = Object.freeze({ 'www-authenticate': 'Bearer error="invalid_token"' })

export class ClientGuard {
  private readonly tokens: TokenStore | undefined
  private readonly peer: PeerSecret | undefined
  private readonly limits: RateLimiter | undefined

  constructor (options: ClientGuardOptions) {
    this.tokens = options.tokens
    this.peer = options.peer
    this.limits = options.limits?.enabled === true ? options.limits : undefined
  }

  /** Whether requests need looking at at all (else the hook is not installed: zero cost). */
  get active (): boolean {
    return this.tokens !== undefined || this.peer !== undefined || this.limits !== undefined
  }

  /** Re-reads the tokens file (SIGHUP); a bad file keeps the old tokens. */
  reload (): boolean {
    return this.tokens?.reload() ?? false
  }

  /**
   * The principal a request is made for: null when clients are not authenticated here.
   * Throws 401 (no or unknown token), 429 (rate limits), 400 (a bad principal header).
   */
  authenticate (headers: IncomingHttpHeaders, ip: string | undefined): Principal | null {
    // By address first: a flood of bad tokens is limited too.
    this.limits?.chargeIp(ip)
    if (this.peer !== undefined && headers[HEADER.peerAuth] !== undefined && this.peer.accepts(headers)) return peerPrincipal(headers[HEADER.principal])
    const tokens = this.tokens
    if (tokens === undefined) return null
    const auth = headers.authorization
    if (auth === undefined) throw new ShardKvError('unauthenticated', 'this endpoint needs Authorization: Bearer <token>', undefined, CHALLENGE)
    // The scheme is case-insensitive; the usual spelling is checked without allocating.
    const bearer = auth.startsWith('Bearer ') || (auth.length > BEARER.length && auth.slice(0, BEARER.length).toLowerCase() === BEARER)
    const principal = bearer ? tokens.lookup(auth.slice(BEARER.length)) : undefined
    if (principal === undefined) throw new ShardKvError('unauthenticated', 'the bearer token is not valid', undefined, CHALLENGE_INVALID)
    this.limits?.chargeToken(principal.name)
    return principal
  }
}

function peerPrincipal (name: string | string[] | undefined): Principal {
  if (name === undefined) return ANONYMOUS_PEER
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw new ShardKvError('invalid_header', `${HEADER.principal} must be a principal name`)
  return { name, roles: ALL_ROLES, prefix: undefined }
}

/** Throws 403 unless the principal (null: auth off) may do `action` on the key(s). */
export function authorizeKey (principal: Principal | null | undefined, action: Action, keys: string | readonly string[]): void {
  if (principal === null || principal === undefined) return
  const refusal = authorize(principal, action, keys)
  if (refusal !== undefined) throw new ShardKvError('forbidden', refusal)
}

/** A batch is judged whole: its gets need `read`, its puts and deletes `write`, every key the prefix. */
export function authorizeOps (principal: Principal | null | undefined, ops: ReadonlyArray<{ op: string, key: string }>): void {
  if (principal === null || principal === undefined) return
  const reads = ops.filter((o) => o.op === 'get').map((o) => o.key)
  const writes = ops.filter((o) => o.op !== 'get').map((o) => o.key)
  if (reads.length > 0) authorizeKey(principal, 'read', reads)
  if (writes.length > 0) authorizeKey(principal, 'write', writes)
}

/** The name a request id is bound to (undefined: no named principal). */
export function principalName (principal: Principal | null | undefined): string | undefined {
  return principal === null || principal === undefined || principal.name === '' ? undefined : principal.name
}

/**
 * What a request needs before its handler runs: nothing (`open`), the peer listener's
 * own check (`peer`: internal endpoints are src/auth/peer.ts's business), a known
 * principal whose keys its handler authorizes (`authenticate`), or a role.
 */
export type RouteRule = 'open' | 'peer' | 'authenticate' | Action

export function ruleOf (url: string): RouteRule {
  if (url.startsWith(KV_PREFIX)) return 'authenticate'
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (path === HEALTH_PATH || path === READY_PATH || path === OPENAPI_PATH || path === DOCS_PATH) return 'open'
  if (path === BATCH_PATH) return 'authenticate'
  if (path.startsWith('/internal/')) return 'peer'
  if (path === METRICS_PATH || path === '/admin' || path.startsWith('/admin/')) return 'admin'
  if (path === CLUSTER_PATH || path === CLUSTER_MAP_PATH || path === DASHBOARD.events) return 'read'
  if (path === DASHBOARD.page || path.startsWith(`${DASHBOARD.page}/`)) return 'open'
  return 'authenticate'
}

/** Authenticates every fastify request by its route's rule and sets `request.principal`. */
export function installClientGuard (app: FastifyInstance, guard: ClientGuard): void {
  app.decorateRequest('principal', null)
  if (!guard.active) return
  app.addHook('onRequest', (request, _reply, done) => {
    const rule = ruleOf(request.raw.url ?? '')
    if (rule === 'open' || rule === 'peer') {
      done()
      return
    }
    try {
      const principal = guard.authenticate(request.headers, request.ip)
      request.principal = principal
      if (rule !== 'authenticate' && principal !== null) authorizeKey(principal, rule, [])
      done()
    } catch (err) {
      done(err as Error)
    }
  })
}
