import t from 'tap'
import { intFlag, parseFlags } from '../../src/config/cli-flags'

/** What a UsageError looks like (tap matches the thrown error against this pattern). */
const USAGE = { code: 'ERR_SHARDKV_USAGE' }

t.test('parseFlags: strict, no positionals, and whatever parseArgs refuses is a UsageError', async (t) => {
  const table = { help: { type: 'boolean' as const, short: 'h' }, groups: { type: 'string' as const } }
  t.same(parseFlags(['--groups', '3', '-h'], table), { groups: '3', help: true })
  t.same(parseFlags([], table), {})
  t.throws(() => parseFlags(['--bogus'], table), USAGE, 'an unknown flag')
  t.throws(() => parseFlags(['stray'], table), USAGE, 'a positional')
  t.throws(() => parseFlags(['--groups'], table), USAGE, 'a flag without its value')
})

t.test('intFlag: the fallback when absent, else an integer in range', async (t) => {
  t.equal(intFlag('groups', undefined, 2, 1, 64), 2)
  t.equal(intFlag('groups', '5', 2, 1, 64), 5)
  for (const bad of ['0', '65', '1.5', 'x', '-1']) t.throws(() => intFlag('groups', bad, 2, 1, 64), USAGE, bad)
})
