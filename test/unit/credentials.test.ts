import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureCredentials } from '../../src/local/credentials'
import { loadPeerSecret } from '../../src/auth/peer'

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-creds-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const mode = (path: string): number => statSync(path).mode & 0o777
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

t.test('a first start creates the secret, the tokens file and the admin token, 0600 each', async (t) => {
  const dir = join(tempDir(t), 'data')
  const c = ensureCredentials(dir)
  t.match(c.createdAdminToken, /^skv_[A-Za-z0-9_-]{43}$/, 'a token of the plan\'s format')
  for (const path of [c.clusterSecretFile, c.tokensFile, c.adminTokenFile]) t.equal(mode(path), 0o600, `${path} is 0600`)
  t.match(readFileSync(c.clusterSecretFile, 'utf8'), /^[A-Za-z0-9_-]{43}\n$/, 'the secret: 43 base64url characters')
  t.ok(loadPeerSecret(c.clusterSecretFile), 'which src/auth/peer.ts accepts')
  t.equal(readFileSync(c.adminTokenFile, 'utf8'), `${c.createdAdminToken ?? ''}\n`, 'admin-token holds the token')
  t.same(JSON.parse(readFileSync(c.tokensFile, 'utf8')), { tokens: [{ name: 'admin', sha256: sha256(c.createdAdminToken ?? ''), roles: ['admin', 'read', 'write'] }] }, 'tokens.json holds its hash only')
  t.notMatch(readFileSync(c.tokensFile, 'utf8'), c.createdAdminToken ?? '', 'not the token')
  t.same(c.warnings, [])
  t.same(readdirSync(dir).sort(), ['admin-token', 'cluster-secret', 'tokens.json'], 'no temp file is left')
})

t.test('a restart keeps every file and prints no token', async (t) => {
  const dir = tempDir(t)
  const first = ensureCredentials(dir)
  const before = [first.clusterSecretFile, first.tokensFile, first.adminTokenFile].map((p) => readFileSync(p, 'utf8'))
  const again = ensureCredentials(dir)
  t.equal(again.createdAdminToken, undefined, 'nothing to print')
  t.same([again.clusterSecretFile, again.tokensFile, again.adminTokenFile].map((p) => readFileSync(p, 'utf8')), before, 'same content')
})

t.test('two data dirs get different credentials', async (t) => {
  const a = ensureCredentials(join(tempDir(t), 'a'))
  const b = ensureCredentials(join(tempDir(t), 'b'))
  t.not(a.createdAdminToken, b.createdAdminToken)
  t.not(readFileSync(a.clusterSecretFile, 'utf8'), readFileSync(b.clusterSecretFile, 'utf8'))
})

t.test('what an operator did to the files is kept, and said', async (t) => {
  const dir = tempDir(t)
  const first = ensureCredentials(dir)
  // tokens.json lost (or a start interrupted before writing it): rebuilt from admin-token.
  unlinkSync(first.tokensFile)
  const rebuilt = ensureCredentials(dir)
  t.equal(rebuilt.createdAdminToken, undefined, 'the existing token is not new')
  t.equal((JSON.parse(readFileSync(first.tokensFile, 'utf8')) as { tokens: Array<{ sha256: string }> }).tokens[0]?.sha256, sha256(first.createdAdminToken ?? ''), 'tokens.json matches admin-token again')
  // admin-token removed (stored elsewhere): not recreated, not an error.
  unlinkSync(first.adminTokenFile)
  const withoutToken = ensureCredentials(dir)
  t.match(withoutToken.warnings, [/admin-token is gone/], 'a missing admin-token is said')
  t.throws(() => statSync(first.adminTokenFile), 'and not recreated')
  // A secret others can read: kept, said.
  chmodSync(first.clusterSecretFile, 0o644)
  t.match(ensureCredentials(dir).warnings, [/admin-token is gone/, /cluster-secret is readable by others \(mode 0644\)/])
  // A hand-written secret that peers would refuse is refused here, with its path.
  writeFileSync(first.clusterSecretFile, 'short\n')
  t.throws(() => ensureCredentials(dir), /cluster-secret: the cluster secret must be at least 32/)
})
