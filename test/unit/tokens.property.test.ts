import t from 'tap'
import fc from 'fast-check'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { authorize, hashToken, newToken, parseTokensFile, ROLES, TokensFileError, TokenStore, type Principal, type Role } from '../../src/auth/tokens'
import { ClientGuard } from '../../src/auth/client-guard'
import { ShardKvError } from '../../src/protocol/errors'
import { anyString, holds, stringOf } from './properties'

/**
 * Tokens (src/auth/tokens.ts) and the bearer check (src/auth/client-guard.ts): the tokens
 * file is operator input that may be mangled, the Authorization header is a stranger's.
 */

function onlyTokensFileError (fn: () => unknown): void {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof TokensFileError)) throw err
  }
}

const name = stringOf('abcXYZ019_.@-', 64).filter((s) => /^[A-Za-z0-9_.@-]{1,64}$/.test(s))
const roles = fc.subarray([...ROLES], { minLength: 1 })
const entry = fc.record({ name, token: fc.constant(null).map(() => newToken()), roles, prefix: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: undefined }) })
const entries = fc.uniqueArray(entry, { selector: (e) => e.name, maxLength: 8 })

t.test('a tokens file: arbitrary text and JSON are parsed or refused with TokensFileError', async (t) => {
  holds(t, 'arbitrary text', [anyString], (s) => { onlyTokensFileError(() => parseTokensFile(s)) })
  holds(t, 'arbitrary JSON values', [fc.jsonValue()], (v) => { onlyTokensFileError(() => parseTokensFile(JSON.stringify(v))) })
  holds(t, 'arbitrary values under "tokens"', [fc.array(fc.anything(), { maxLength: 4 })], (v) => { onlyTokensFileError(() => parseTokensFile(JSON.stringify({ tokens: v }))) })
  holds(t, 'entries with arbitrary field values', [fc.record({ name: fc.anything(), sha256: fc.oneof(fc.anything(), fc.stringMatching(/^[0-9a-f]{64}$/)), roles: fc.anything() }, { requiredKeys: [] })], (e) => {
    onlyTokensFileError(() => parseTokensFile(JSON.stringify({ tokens: [e] })))
  })
})

t.test('a written file parses back to the same principals', async (t) => {
  holds(t, 'round trip', [entries], (es) => {
    const text = JSON.stringify({ tokens: es.map((e) => ({ name: e.name, sha256: hashToken(e.token), roles: e.roles, ...(e.prefix !== undefined ? { prefix: e.prefix } : {}) })) })
    const byHash = parseTokensFile(text)
    return byHash.size === es.length && es.every((e) => {
      const p = byHash.get(hashToken(e.token))
      return p !== undefined && p.name === e.name && p.prefix === e.prefix && p.roles.size === new Set(e.roles).size && e.roles.every((r) => p.roles.has(r))
    })
  })
})

t.test('authorize keeps a principal inside its roles and prefix', async (t) => {
  const principal = (rs: Role[], prefix?: string): Principal => ({ name: 'p', roles: new Set(rs), prefix })
  holds(t, 'no key outside the prefix is ever allowed', [roles, fc.string({ minLength: 1, maxLength: 8 }), fc.array(fc.string({ maxLength: 12 }), { maxLength: 5 })], (rs, prefix, keys) => {
    const allowed = authorize(principal(rs, prefix), 'read', keys) === undefined
    return !allowed || (rs.includes('read') && keys.every((k) => k.startsWith(prefix)))
  })
  holds(t, 'a missing role is never allowed', [roles, fc.constantFrom<Role>(...ROLES), fc.string({ maxLength: 12 })], (rs, action, key) => {
    return rs.includes(action) || authorize(principal(rs), action, key) !== undefined
  })
})

t.test('the bearer check: only a listed token, under the Bearer scheme, names a principal', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-tokens-prop-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const known = newToken()
  const file = join(dir, 'tokens.json')
  writeFileSync(file, JSON.stringify({ tokens: [{ name: 'app', sha256: hashToken(known), roles: ['read'] }] }))
  const guard = new ClientGuard({ tokens: new TokenStore(file) })
  const check = (authorization: string): Principal | null | 'refused' => {
    try {
      return guard.authenticate({ authorization }, '127.0.0.1')
    } catch (err) {
      if (err instanceof ShardKvError && err.code === 'unauthenticated') return 'refused'
      throw err
    }
  }
  const near = fc.oneof(anyString, fc.constantFrom('Bearer ', 'bearer ', 'BEARER ', 'Basic ', 'Bearer  ').chain((s) => fc.oneof(fc.constant(s + known), anyString.map((x) => s + x), fc.constant(s + known + ' '), fc.constant(s + known.slice(0, -1)))))
  holds(t, 'anything but "Bearer <the token>" is refused with 401', [near], (h) => {
    const got = check(h)
    const valid = h.length === known.length + 7 && h.slice(0, 7).toLowerCase() === 'bearer ' && h.slice(7) === known
    return valid ? got !== 'refused' && got?.name === 'app' : got === 'refused'
  })
})
