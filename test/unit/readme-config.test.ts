import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SHARD_OPTIONS, ROUTER_OPTIONS, type OptionTable } from '../../src/config/options'

/**
 * The README's configuration tables must list every flag and environment variable
 * the processes accept (src/config/options.ts is the source of truth).
 */

const README = join(__dirname, '..', '..', 'README.md')

t.test('README.md documents every flag and environment variable', async (t) => {
  if (!existsSync(README)) {
    t.fail(`README.md is missing at ${README}: it must document every flag and env var of SHARD_OPTIONS and ROUTER_OPTIONS (src/config/options.ts)`)
    return
  }
  const text = readFileSync(README, 'utf8')
  const tables: Array<[string, OptionTable]> = [['shard node', SHARD_OPTIONS], ['router', ROUTER_OPTIONS]]
  for (const [part, table] of tables) {
    for (const spec of Object.values(table)) {
      // Whole-word match: --port must not be satisfied by --port-range, nor SHARDKV_GROUP by SHARDKV_GROUPS.
      const flag = new RegExp(`--${spec.flag}(?![A-Za-z0-9-])`)
      const env = new RegExp(`(?<![A-Z0-9_])${spec.env}(?![A-Z0-9_])`)
      t.match(text, flag, `${part}: --${spec.flag} is in README.md`)
      t.match(text, env, `${part}: ${spec.env} is in README.md`)
    }
  }
})
