import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SHARD_OPTIONS, ROUTER_OPTIONS, type OptionTable } from '../../src/config/options'
import { renderConfigDocs } from '../../scripts/config-docs'

/**
 * docs/configuration.md must list every flag and environment variable the processes
 * accept (src/config/options.ts is the source of truth), and be exactly what
 * `npm run docs:config` writes, so a changed help text or default shows up there too.
 */

const DOCS = join(__dirname, '..', '..', 'docs', 'configuration.md')

t.test('docs/configuration.md documents every flag and environment variable', async (t) => {
  if (!existsSync(DOCS)) {
    t.fail(`docs/configuration.md is missing at ${DOCS}: run npm run docs:config`)
    return
  }
  const text = readFileSync(DOCS, 'utf8')
  const tables: Array<[string, OptionTable]> = [['shard node', SHARD_OPTIONS], ['router', ROUTER_OPTIONS]]
  for (const [part, table] of tables) {
    for (const spec of Object.values(table)) {
      // Whole-word match: --port must not be satisfied by --port-range, nor SHARDKV_GROUP by SHARDKV_GROUPS.
      const flag = new RegExp(`--${spec.flag}(?![A-Za-z0-9-])`)
      const env = new RegExp(`(?<![A-Z0-9_])${spec.env}(?![A-Z0-9_])`)
      t.match(text, flag, `${part}: --${spec.flag} is in docs/configuration.md`)
      t.match(text, env, `${part}: ${spec.env} is in docs/configuration.md`)
    }
  }
})

t.test('docs/configuration.md is what npm run docs:config writes', async (t) => {
  const text = existsSync(DOCS) ? readFileSync(DOCS, 'utf8') : ''
  t.equal(text, renderConfigDocs(), 'docs/configuration.md is current (else: npm run docs:config)')
})
