import { readFileSync } from 'node:fs'
import { timingSafeEqual, createHash } from 'node:crypto'
import { Agent, type AgentOptions, type Dispatcher } from '../http/undici'
import type { FastifyInstance } from 'fastify'
import { HEADER } from '../protocol/wire'
import { ShardKvError } from '../protocol/errors'
import { ConfigError } from '../config/options'
import { loadPeerTls, withPeerTls, type PeerTls, type PeerTlsFlags } from './tls'

/**
 * The cluster secret: what makes a request a peer request (coordinator → node,
 * primary → replica, primary → coordinator, router → node). Every process of a
 * cluster reads the same secret from a file; a peer request carries it in
 * `x-shardkv-peer-auth`, like Redis's masterauth. Without TLS it travels in clear,
 * so a cluster that leaves one machine runs its peer listeners with mutual TLS too.
 *
 * The secret is the trust root: any holder of it is a peer. The sender checks on top
 * (a shipment only from the group's primary, a map or lease only from the coordinator;
 * src/auth/senders.ts) keep honest peers from acting out of turn — a deposed primary, a
 * second router — not a holder of the secret who lies about who it is.
 */

/** Shortest secret accepted: 32 characters (a generated one is 43 base64url characters, 256 bits). */
const MIN_SECRET_LENGTH = 32
const SECRET_GRAMMAR = /^[\x21-\x7e]+$/

export class PeerSecret {
  private readonly digest: Buffer
  /** The header a peer request carries; computed once, not per request. */
  readonly headers: Readonly<Record<string, string>>

  constructor (readonly value: string) {
    if (value.length < MIN_SECRET_LENGTH || !SECRET_GRAMMAR.test(value)) {
      throw new Error(`the cluster secret must be at least ${MIN_SECRET_LENGTH} printable ASCII characters without spaces`)
    }
    this.digest = sha256(value)
    this.headers = Object.freeze({ [HEADER.peerAuth]: value })
  }

  /** Whether a request's headers carry this secret (constant time over the digests). */
  accepts (headers: Record<string, string | string[] | undefined>): boolean {
    const presented = headers[HEADER.peerAuth]
    if (typeof presented !== 'string' || presented.length > 1024) return false
    return timingSafeEqual(sha256(presented), this.digest)
  }
}

/** Reads a secret file (one line; surrounding whitespace ignored). Throws with the path on any problem. */
export function loadPeerSecret (path: string): PeerSecret {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`cannot read the cluster secret file ${path}: ${(err as Error).message}`)
  }
  try {
    return new PeerSecret(text.trim())
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`)
  }
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** What a process proves itself with toward peers, and demands of them. */
export interface PeerCredentials {
  /** Undefined: peers are not authenticated (the loopback-only default). */
  secret: PeerSecret | undefined
  /** Undefined: peer connections are plain HTTP. */
  tls: PeerTls | undefined
}

export const NO_PEER_CREDENTIALS: PeerCredentials = Object.freeze({ secret: undefined, tls: undefined })

/**
 * Reads the secret file and the peer TLS files named by a process's configuration.
 * Every process reads them itself (a shard supervisor and each of its workers), so no
 * secret travels through an environment variable or IPC. Throws ConfigError.
 */
export function loadPeerCredentials (config: PeerTlsFlags & { clusterSecretFile: string, port: number, peerPort?: number }): PeerCredentials {
  // One port for both would hand peers' and clients' connections to whichever listener the kernel picks.
  if (config.peerPort !== undefined && config.peerPort > 0 && config.peerPort === config.port) throw new ConfigError(`--peer-port ${config.peerPort} is the data port; give the peer listener its own port (or -1)`)
  let secret: PeerSecret | undefined
  if (config.clusterSecretFile !== '') {
    try {
      secret = loadPeerSecret(config.clusterSecretFile)
    } catch (err) {
      throw new ConfigError((err as Error).message)
    }
  }
  const tls = loadPeerTls(config)
  // A listener that serves peers must be its own: the data port serves direct clients, who have no peer certificate (a router has no peer listener, and uses the TLS only toward peers).
  if (tls !== undefined && config.peerPort !== undefined && config.peerPort < 0) throw new ConfigError('--peer-tls-cert/-key/-ca need a peer listener: set --peer-port')
  return { secret, tls }
}

/**
 * An undici dispatcher for peer requests: a kept-alive pool that presents the peer TLS
 * certificate (when configured) and adds the secret header to every request it sends,
 * so no call site can forget either.
 */
/**
 * How long a peer connection (TLS included) may take to open, unless a caller says
 * otherwise. Between peers a connect either works or is refused at once; one that hangs
 * is a host that drops packets (a partition, a full accept queue), and undici's default
 * of 10 s would hold a coordinator's scan, import or purge, or a primary's shipment,
 * that long behind it. The router's pools use 1 s (src/http/exchange.ts).
 */
export const PEER_CONNECT_TIMEOUT_MS = 2000

export function peerDispatcher (credentials: PeerCredentials, options: AgentOptions = {}): Dispatcher {
  const connect = typeof options.connect === 'object' && options.connect !== null ? options.connect : {}
  const agent = new Agent(withPeerTls({ ...options, connect: { timeout: PEER_CONNECT_TIMEOUT_MS, ...connect } }, credentials.tls))
  const secret = credentials.secret
  if (secret === undefined) return agent
  return agent.compose((dispatch) => (opts, handler) => dispatch({ ...opts, headers: withHeaders(opts.headers, secret.headers) }, handler))
}

function withHeaders (headers: Dispatcher.DispatchOptions['headers'], extra: Readonly<Record<string, string>>): Record<string, string | string[] | undefined> | string[] {
  if (headers === undefined || headers === null) return { ...extra }
  if (Array.isArray(headers)) return [...(headers as string[]), ...Object.entries(extra).flat()]
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const out: Record<string, string | string[] | undefined> = {}
    for (const [k, v] of headers as Iterable<[string, string | string[] | undefined]>) out[k] = v
    return { ...out, ...extra }
  }
  return { ...(headers as Record<string, string | string[] | undefined>), ...extra }
}

/**
 * Makes every route of `scope` (a fastify instance or an encapsulated plugin scope
 * holding only internal routes) refuse requests without the cluster secret: 401
 * through the central error handler, before the body is parsed or anything runs. A
 * client token (Authorization: Bearer) is no peer credential and is refused alike.
 */
export function requirePeerSecret (scope: FastifyInstance, secret: PeerSecret | undefined): void {
  if (secret === undefined) return
  scope.addHook('onRequest', (request, _reply, done) => {
    if (secret.accepts(request.headers)) done()
    else done(new ShardKvError('unauthenticated', 'internal endpoints need the cluster secret'))
  })
}
