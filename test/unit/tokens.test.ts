import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { authorize, hashToken, isTokenShaped, newToken, parseTokensFile, TokenStore, type Action, type Principal, type Role } from '../../src/auth/tokens'

const H = (c: string): string => c.repeat(64)

function principal (roles: Role[], prefix?: string): Principal {
  return { name: 'p', roles: new Set(roles), prefix }
}

t.test('authorize: the table', async (t) => {
  const rows: Array<[string, Principal, Action, string[], boolean]> = [
    ['reader reads', principal(['read']), 'read', ['a'], true],
    ['reader may not write', principal(['read']), 'write', ['a'], false],
    ['reader may not administer', principal(['read']), 'admin', [], false],
    ['writer writes', principal(['write']), 'write', ['a'], true],
    ['writer may not read', principal(['write']), 'read', ['a'], false],
    ['admin administers', principal(['admin']), 'admin', [], true],
    ['admin alone may not read keys', principal(['admin']), 'read', ['a'], false],
    ['prefix: inside', principal(['read', 'write'], 'app1/'), 'write', ['app1/x'], true],
    ['prefix: the prefix itself', principal(['read'], 'app1/'), 'read', ['app1/'], true],
    ['prefix: outside', principal(['read', 'write'], 'app1/'), 'read', ['app2/x'], false],
    ['prefix: a look-alike', principal(['read'], 'app1/'), 'read', ['app1'], false],
    ['prefix: a batch with one key outside is refused whole', principal(['write'], 'app1/'), 'write', ['app1/a', 'app1/b', 'x'], false],
    ['prefix: a batch inside', principal(['write'], 'app1/'), 'write', ['app1/a', 'app1/b'], true],
    ['prefix: no keys (GET /cluster)', principal(['read'], 'app1/'), 'read', [], true],
    ['prefix does not limit admin', principal(['admin'], 'app1/'), 'admin', [], true]
  ]
  for (const [name, p, action, keys, allowed] of rows) {
    const refusal = authorize(p, action, keys)
    t.equal(refusal === undefined, allowed, name)
    if (!allowed) t.type(refusal, 'string', `${name}: says why`)
  }
})

t.test('tokens: 256 random bits, skv_ + 43 base64url; hash is hex sha256', async (t) => {
  const a = newToken()
  const b = newToken()
  t.match(a, /^skv_[A-Za-z0-9_-]{43}$/)
  t.not(a, b)
  t.ok(isTokenShaped(a))
  t.notOk(isTokenShaped('skv_short'))
  t.equal(hashToken('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
})

t.test('the parser of untrusted files', async (t) => {
  const ok = parseTokensFile(JSON.stringify({ tokens: [
    { name: 'admin', sha256: H('a'), roles: ['admin', 'read', 'write'] },
    { name: 'app1', sha256: H('b'), roles: ['read'], prefix: 'app1/' }
  ] }))
  t.equal(ok.size, 2)
  t.same([...(ok.get(H('b'))?.roles ?? [])], ['read'])
  t.equal(ok.get(H('b'))?.prefix, 'app1/')
  t.equal(parseTokensFile('{"tokens":[]}').size, 0, 'an empty list is valid (nobody gets in)')

  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{', /not JSON/],
    ['no tokens array', '{"toks":[]}', /expected/],
    ['unknown top-level field', '{"tokens":[],"x":1}', /unknown field "x"/],
    ['entry not an object', '{"tokens":[1]}', /tokens\[0\]: expected an object/],
    ['unknown role', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: ['root'] }] }), /unknown role "root"/],
    ['no roles', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: [] }] }), /roles must be/],
    ['upper-case hash', JSON.stringify({ tokens: [{ name: 'a', sha256: H('A'), roles: ['read'] }] }), /sha256 must be/],
    ['a plain token instead of a hash', JSON.stringify({ tokens: [{ name: 'a', sha256: newToken(), roles: ['read'] }] }), /sha256 must be/],
    ['short hash', JSON.stringify({ tokens: [{ name: 'a', sha256: 'ab', roles: ['read'] }] }), /sha256 must be/],
    ['duplicate name', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: ['read'] }, { name: 'a', sha256: H('b'), roles: ['read'] }] }), /tokens\[1\]: duplicate name "a"/],
    ['duplicate hash', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: ['read'] }, { name: 'b', sha256: H('a'), roles: ['read'] }] }), /same sha256 as "a"/],
    ['bad name', JSON.stringify({ tokens: [{ name: 'a b', sha256: H('a'), roles: ['read'] }] }), /name must be/],
    ['empty prefix', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: ['read'], prefix: '' }] }), /prefix must be/],
    ['unknown entry field', JSON.stringify({ tokens: [{ name: 'a', sha256: H('a'), roles: ['read'], token: 'x' }] }), /unknown field "token"/]
  ]
  for (const [name, text, message] of bad) t.throws(() => parseTokensFile(text), { name: 'TokensFileError', message }, name)
})

t.test('TokenStore: lookup by hash; a bad file on reload keeps the old tokens', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-tokens-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const path = join(dir, 'tokens.json')
  const one = newToken()
  const two = newToken()
  writeFileSync(path, JSON.stringify({ tokens: [{ name: 'one', sha256: hashToken(one), roles: ['read'] }] }))
  const store = new TokenStore(path)
  t.equal(store.lookup(one)?.name, 'one')
  t.equal(store.lookup(two), undefined)
  t.equal(store.lookup('junk'), undefined)

  writeFileSync(path, '{"tokens": [')
  t.equal(store.reload(), false, 'a broken file is not taken')
  t.equal(store.lookup(one)?.name, 'one', 'the old tokens stay in force')

  writeFileSync(path, JSON.stringify({ tokens: [{ name: 'two', sha256: hashToken(two), roles: ['write'] }] }))
  t.equal(store.reload(), true)
  t.equal(store.lookup(one), undefined, 'revoked')
  t.equal(store.lookup(two)?.name, 'two', 'added')
  t.throws(() => new TokenStore(join(dir, 'missing.json')), /cannot read the tokens file/)
})
