import { readFileSync } from 'node:fs'
import { timingSafeEqual, createHash } from 'node:crypto'
import { HEADER } from '../protocol/wire'

/**
 * The cluster secret: what makes a request a peer request (coordinator → node,
 * primary → replica, primary → coordinator, router → node). Every process of a
 * cluster reads the same secret from a file; a peer request carries it in
 * `x-shardkv-peer-auth`, like Redis's masterauth. Without TLS it travels in clear,
 * so a cluster that leaves one machine runs its peer listeners with mutual TLS too.
 */

/** Shortest secret accepted: 32 characters (a generated one is 43 base64url characters, 256 bits). */
export const MIN_SECRET_LENGTH = 32
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
