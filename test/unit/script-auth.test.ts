import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { adminToken, nodeCredentials } from '../../scripts/auth'
import { ensureCredentials } from '../../src/local/credentials'

t.test('the scripts\' admin token: --token, else $SHARDKV_TOKEN, else <cluster-dir>/admin-token, else none', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-script-auth-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const empty = join(dir, 'none')
  t.equal(adminToken(undefined, empty, {}), undefined, 'nothing anywhere: no token (an unauthenticated cluster)')
  const made = ensureCredentials(dir).createdAdminToken
  const table: Array<[string, string | undefined, string, NodeJS.ProcessEnv, string | undefined]> = [
    ['the cluster dir\'s file', undefined, dir, {}, made],
    ['$SHARDKV_TOKEN over the file', undefined, dir, { SHARDKV_TOKEN: 'skv_env' }, 'skv_env'],
    ['--token over both', 'skv_flag', dir, { SHARDKV_TOKEN: 'skv_env' }, 'skv_flag'],
    ['an empty $SHARDKV_TOKEN is unset', undefined, dir, { SHARDKV_TOKEN: '' }, made]
  ]
  for (const [name, flag, clusterDir, env, want] of table) t.equal(adminToken(flag, clusterDir, env), want, name)
})

t.test('credentials for nodes a script starts: $SHARDKV_*_FILE, else the cluster dir\'s, only when both exist', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-script-auth-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  t.equal(nodeCredentials(dir, {}), undefined, 'none made yet')
  writeFileSync(join(dir, 'cluster-secret'), 'x'.repeat(43))
  t.equal(nodeCredentials(dir, {}), undefined, 'a secret without a tokens file is not a set')
  const c = ensureCredentials(dir)
  t.same(nodeCredentials(dir, {}), { clusterSecretFile: c.clusterSecretFile, tokensFile: c.tokensFile }, 'the cluster dir\'s files')
  t.same(nodeCredentials(dir, { SHARDKV_TOKENS_FILE: '/etc/shardkv/tokens.json' }), { clusterSecretFile: c.clusterSecretFile, tokensFile: '/etc/shardkv/tokens.json' }, 'the environment wins, file by file')
})
