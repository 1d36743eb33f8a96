import { KV_PREFIX } from './wire'
import { ShardKvError } from './errors'

export const MAX_KEY_BYTES = 1024

/**
 * Extracts and decodes the key from a raw request URL (`/kv/<segment>[?query]`).
 * We parse the raw URL rather than trusting a router's param decoding so that the
 * router, the shard and the client agree byte for byte on what a key is:
 * exactly one path segment, percent-decoded as UTF-8, 1..1024 bytes.
 */
export function keyFromUrl (rawUrl: string): string {
  let end = rawUrl.indexOf('?')
  if (end === -1) end = rawUrl.length
  const hash = rawUrl.indexOf('#')
  if (hash !== -1 && hash < end) end = hash
  if (!rawUrl.startsWith(KV_PREFIX)) {
    throw new ShardKvError('invalid_key', 'the key must follow /kv/')
  }
  const segment = rawUrl.slice(KV_PREFIX.length, end)
  return decodeKeySegment(segment)
}

export function decodeKeySegment (segment: string): string {
  if (segment.length === 0) {
    throw new ShardKvError('invalid_key', 'the key is empty')
  }
  if (segment.includes('/')) {
    throw new ShardKvError('invalid_key', 'the key must be one path segment: encode "/" as %2F')
  }
  let key: string
  try {
    key = decodeURIComponent(segment)
  } catch {
    throw new ShardKvError('invalid_key', 'the key is not valid percent-encoded UTF-8')
  }
  validateKey(key)
  return key
}

export function validateKey (key: string): void {
  if (key.length === 0) {
    throw new ShardKvError('invalid_key', 'the key is empty')
  }
  // Lone surrogates cannot come out of decodeURIComponent, but a client may pass one.
  if (!key.isWellFormed()) {
    throw new ShardKvError('invalid_key', 'the key is not well-formed Unicode')
  }
  // A key of at most 256 UTF-16 units is at most 768 UTF-8 bytes: skip the byte count.
  if (key.length > 256) {
    const bytes = Buffer.byteLength(key, 'utf8')
    if (bytes > MAX_KEY_BYTES) {
      throw new ShardKvError('invalid_key', `the key is ${bytes} bytes of UTF-8; at most ${MAX_KEY_BYTES} are allowed`)
    }
  }
}

/** The URL path for a key (what a client or the router sends). */
export function kvPath (key: string): string {
  return KV_PREFIX + encodeURIComponent(key)
}
