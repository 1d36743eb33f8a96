/**
 * YCSB's key choosers, ported so that "zipfian" means here what it means in YCSB's core
 * workloads (site.ycsb.generator.ZipfianGenerator and ScrambledZipfianGenerator): the
 * algorithm of Gray et al., "Quickly Generating Billion-Record Synthetic Databases"
 * (SIGMOD 1994), with zipfian constant 0.99; the scrambled variant draws from a zipfian
 * over 10^10 items (whose zeta YCSB hard-codes, as computing it takes minutes) and
 * spreads the popular items over the key space with a 64-bit FNV-1a hash, so that the
 * hot keys are not the first ones inserted (nor, here, all on one group). Pure: every
 * draw comes from a seeded generator, so a run's key sequence is reproducible.
 */

export const ZIPFIAN_CONSTANT = 0.99

/** A uniform double in [0, 1). */
export type Random = () => number

/** mulberry32: small, fast and good enough to drive a key chooser; seeded for reproducible runs. */
export function seededRandom (seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** zeta(n, theta) = sum over i in 1..n of 1 / i^theta. */
export function zeta (n: number, theta: number): number {
  let sum = 0
  for (let i = 1; i <= n; i++) sum += 1 / Math.pow(i, theta)
  return sum
}

/** Draws integers in [0, items) with P(i) proportional to 1 / (i+1)^theta: 0 is the most popular. */
export class ZipfianGenerator {
  private readonly alpha: number
  private readonly eta: number
  private readonly half: number

  /** `zetan` may be given when it is known (it is O(items) to compute). */
  constructor (readonly items: number, private readonly random: Random, readonly theta = ZIPFIAN_CONSTANT, readonly zetan = zeta(items, theta)) {
    if (!Number.isInteger(items) || items < 1) throw new RangeError('a zipfian needs at least one item')
    const zeta2 = zeta(2, theta)
    this.alpha = 1 / (1 - theta)
    this.eta = (1 - Math.pow(2 / items, 1 - theta)) / (1 - zeta2 / zetan)
    this.half = 1 + Math.pow(0.5, theta)
  }

  next (): number {
    const u = this.random()
    const uz = u * this.zetan
    if (uz < 1) return 0
    if (uz < this.half) return Math.min(1, this.items - 1)
    return Math.min(this.items - 1, Math.floor(this.items * Math.pow(this.eta * u - this.eta + 1, this.alpha)))
  }
}

const FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325n
const FNV_PRIME_64 = 1099511628211n

/** YCSB's Utils.fNVhash64: FNV-1a over the 8 bytes of a long, low byte first, as a non-negative Java long. */
export function fnvHash64 (value: number): bigint {
  let v = BigInt(value)
  let hash = FNV_OFFSET_BASIS_64
  for (let i = 0; i < 8; i++) {
    hash ^= v & 0xFFn
    v >>= 8n
    hash = BigInt.asIntN(64, hash * FNV_PRIME_64)
  }
  // Java's Math.abs of a long (Long.MIN_VALUE stays negative there; it cannot come out of 8 rounds in practice).
  return hash < 0n ? -hash : hash
}

/** YCSB's ScrambledZipfianGenerator: ITEM_COUNT and ZETAN as it hard-codes them. */
const SCRAMBLED_ITEMS = 10_000_000_000
const SCRAMBLED_ZETAN = 26.46902820178302

export class ScrambledZipfianGenerator {
  private readonly gen: ZipfianGenerator
  private readonly n: bigint

  constructor (readonly items: number, random: Random) {
    if (!Number.isInteger(items) || items < 1) throw new RangeError('a zipfian needs at least one item')
    this.gen = new ZipfianGenerator(SCRAMBLED_ITEMS, random, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN)
    this.n = BigInt(items)
  }

  /** A record number in [0, items). */
  next (): number {
    return Number(fnvHash64(this.gen.next()) % this.n)
  }
}
