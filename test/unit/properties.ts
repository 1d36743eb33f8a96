import fc from 'fast-check'
import type { Test } from 'tap'
import { ShardKvError, type ErrorCode } from '../../src/protocol/errors'

/**
 * Shared pieces of the property tests (*.property.test.ts) of the parsers that see
 * untrusted bytes. Runs are bounded so the unit suite stays fast; a failure prints the
 * shrunk counterexample and the seed to replay it with.
 */

export const RUNS = { numRuns: 500 }

/** Any string: ASCII-heavy, full Unicode, and UTF-16 units that include lone surrogates. */
export const anyString = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 64 }),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 64 })
)

/** Strings built from the characters a grammar cares about, so near-misses are common. */
export function stringOf (chars: string, maxLength = 40): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...chars.split('')), maxLength })
}

/** Calls fn; returns its value, or undefined when it threw the module's coded error (anything else fails the property). */
export function codedOrValue<T> (fn: () => T, codes: readonly ErrorCode[]): T | undefined {
  try {
    return fn()
  } catch (err) {
    if (err instanceof ShardKvError && codes.includes(err.code)) return undefined
    throw err
  }
}

/** Asserts a property and records it as one passing assertion. */
export function holds<Ts extends [unknown, ...unknown[]]> (t: Test, name: string, arbs: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> }, predicate: (...args: Ts) => boolean | void): void {
  fc.assert(fc.property(...arbs, predicate), RUNS)
  t.pass(name)
}
