import { hash as oneShotHash } from 'node:crypto'

/**
 * A key's point on the ring: the first four bytes of its MD5 digest, little-endian, as
 * hashring's `hashValue()` computes it (test/unit/key-hash.test.ts checks both agree).
 *
 * Why not hashring's own: every routed request and every op of a batch hashes its key on
 * the router, and again on the shard node that checks ownership; through hashring that is
 * a Hash object, a digest Buffer and four lookups per key (≈1.3 µs, a tenth of the
 * router's CPU per batched key). Keys of at most 55 ASCII characters — one MD5 block, the
 * common case — are hashed here in plain integer arithmetic with no allocation (≈0.3 µs);
 * any other key takes Node's one-shot `crypto.hash` (no Hash object). MD5 is used for
 * placement only, where it is part of the persisted ring format (RingParams.algorithm).
 */

/** The sine-derived constants of RFC 1321, as signed 32-bit integers. */
const K = Int32Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0)
/** Per-round shift amounts, four per round. */
const SHIFT = Int32Array.from([7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21])
/** The one message block, reused (the hash is synchronous). */
const BLOCK = new Int32Array(16)

const INIT_A = 0x67452301
const INIT_B = 0xefcdab89 | 0
const INIT_C = 0x98badcfe | 0
const INIT_D = 0x10325476
/** The last digest, as four little-endian words (the one answer, reused). */
const DIGEST = new Uint32Array(4)
/** The longest message that fits one block with its padding and length. */
const ONE_BLOCK = 55

export function keyHash (key: string): number {
  return key.length <= ONE_BLOCK && oneBlock(key) ? (DIGEST[0] as number) : viaCrypto(key).readUInt32LE(0)
}

/**
 * The whole MD5 digest of `text` as four little-endian words (the ring's four points
 * per virtual node, continuum.ts). The answer is a view that the next call overwrites.
 */
export function md5Words (text: string): Uint32Array {
  if (text.length <= ONE_BLOCK && oneBlock(text)) return DIGEST
  const digest = viaCrypto(text)
  for (let i = 0; i < 4; i++) DIGEST[i] = digest.readUInt32LE(i * 4)
  return DIGEST
}

function viaCrypto (text: string): Buffer {
  return oneShotHash('md5', text, 'buffer')
}

/** MD5 of a key of at most 55 ASCII characters into DIGEST; false (nothing written) for any other character. */
function oneBlock (key: string): boolean {
  const n = key.length
  BLOCK.fill(0)
  for (let i = 0; i < n; i++) {
    const ch = key.charCodeAt(i)
    if (ch > 0x7f) return false
    BLOCK[i >> 2] = (BLOCK[i >> 2] as number) | (ch << ((i & 3) << 3))
  }
  BLOCK[n >> 2] = (BLOCK[n >> 2] as number) | (0x80 << ((n & 3) << 3))
  BLOCK[14] = n << 3
  let a = INIT_A
  let b = INIT_B
  let c = INIT_C
  let d = INIT_D
  for (let i = 0; i < 64; i++) {
    let f: number
    let g: number
    if (i < 16) {
      f = (b & c) | (~b & d)
      g = i
    } else if (i < 32) {
      f = (d & b) | (~d & c)
      g = (5 * i + 1) & 15
    } else if (i < 48) {
      f = b ^ c ^ d
      g = (3 * i + 5) & 15
    } else {
      f = c ^ (b | ~d)
      g = (7 * i) & 15
    }
    const s = SHIFT[((i >> 4) << 2) | (i & 3)] as number
    const t = (a + f + (K[i] as number) + (BLOCK[g] as number)) | 0
    a = d
    d = c
    c = b
    b = (b + ((t << s) | (t >>> (32 - s)))) | 0
  }
  DIGEST[0] = a + INIT_A
  DIGEST[1] = b + INIT_B
  DIGEST[2] = c + INIT_C
  DIGEST[3] = d + INIT_D
  return true
}
