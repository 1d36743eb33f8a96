import { readFileSync } from 'node:fs'
import { hash, randomBytes } from 'node:crypto'
import type { Logger } from '../log'

/**
 * Client tokens: who a client is (a named principal) and what it may do (roles, an
 * optional key prefix). The tokens file holds only SHA-256 hashes of the tokens, so a
 * leaked file (or backup of it) opens nothing:
 *
 *     {"tokens": [
 *       {"name": "admin", "sha256": "<64 hex>", "roles": ["admin", "read", "write"]},
 *       {"name": "app1",  "sha256": "<64 hex>", "roles": ["read", "write"], "prefix": "app1/"}
 *     ]}
 *
 * A token is `skv_` + 43 base64url characters (256 random bits): far too many bits to
 * guess, so an unsalted fast hash is enough (unlike passwords, there is no dictionary
 * to try), and a lookup by hash in a Map leaks nothing useful through timing — an
 * attacker cannot choose the hash they are probing for.
 */

export type Role = 'read' | 'write' | 'admin'
export const ROLES: readonly Role[] = ['read', 'write', 'admin']

export interface Principal {
  name: string
  roles: ReadonlySet<Role>
  /** Every key the principal touches must start with this (undefined: any key). */
  prefix: string | undefined
}

/** What a request does: reads or writes keys, or administers the cluster. */
export type Action = 'read' | 'write' | 'admin'

const TOKEN_PREFIX = 'skv_'
const TOKEN_PATTERN = /^skv_[A-Za-z0-9_-]{43}$/
const HASH_PATTERN = /^[0-9a-f]{64}$/
/** A principal's name: in the tokens file, and in `x-shardkv-principal` from a router. */
export const NAME_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/
/** Caps on what an untrusted file may make this process hold. */
const MAX_TOKENS = 10_000
const MAX_PREFIX = 1024

/** A new token: `skv_` + 256 random bits, base64url. Shown once; only its hash is stored. */
export function newToken (): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

/** The hash the tokens file stores and lookups go by (hex SHA-256 of the token's UTF-8). */
export function hashToken (token: string): string {
  // One-shot: no Hash object per request on the GET path.
  return hash('sha256', token, 'hex')
}

/** Whether a string has a token's shape (checked before hashing: junk is refused cheaply). */
export function isTokenShaped (token: string): boolean {
  return TOKEN_PATTERN.test(token)
}

export class TokensFileError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'TokensFileError'
  }
}

/** Parses a tokens file's text (untrusted) into principals by hash. Throws TokensFileError naming the entry. */
export function parseTokensFile (text: string): Map<string, Principal> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new TokensFileError(`not JSON: ${(err as Error).message}`)
  }
  if (!isObject(doc) || !Array.isArray(doc.tokens)) throw new TokensFileError('expected {"tokens": [...]}')
  const extra = Object.keys(doc).filter((k) => k !== 'tokens')
  if (extra.length > 0) throw new TokensFileError(`unknown field ${JSON.stringify(extra[0])} at the top level`)
  if (doc.tokens.length > MAX_TOKENS) throw new TokensFileError(`at most ${MAX_TOKENS} tokens`)
  const byHash = new Map<string, Principal>()
  const names = new Set<string>()
  doc.tokens.forEach((entry: unknown, i: number) => {
    const { hash, principal } = parseEntry(entry, `tokens[${i}]`)
    if (names.has(principal.name)) throw new TokensFileError(`tokens[${i}]: duplicate name ${JSON.stringify(principal.name)}`)
    if (byHash.has(hash)) throw new TokensFileError(`tokens[${i}]: the same sha256 as ${JSON.stringify(byHash.get(hash)?.name)}`)
    names.add(principal.name)
    byHash.set(hash, principal)
  })
  return byHash
}

function parseEntry (entry: unknown, at: string): { hash: string, principal: Principal } {
  if (!isObject(entry)) throw new TokensFileError(`${at}: expected an object`)
  const unknown = Object.keys(entry).find((k) => !['name', 'sha256', 'roles', 'prefix'].includes(k))
  if (unknown !== undefined) throw new TokensFileError(`${at}: unknown field ${JSON.stringify(unknown)}`)
  const { name, sha256, roles, prefix } = entry
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw new TokensFileError(`${at}: name must be 1-64 of A-Z a-z 0-9 _ . @ -`)
  if (typeof sha256 !== 'string' || !HASH_PATTERN.test(sha256)) throw new TokensFileError(`${at} (${name}): sha256 must be 64 lower-case hex digits (the hash of the token, never the token)`)
  if (!Array.isArray(roles) || roles.length === 0) throw new TokensFileError(`${at} (${name}): roles must be a non-empty array of ${ROLES.join(', ')}`)
  const set = new Set<Role>()
  for (const r of roles) {
    if (!ROLES.includes(r as Role)) throw new TokensFileError(`${at} (${name}): unknown role ${JSON.stringify(r)} (roles are ${ROLES.join(', ')})`)
    set.add(r as Role)
  }
  if (prefix !== undefined && (typeof prefix !== 'string' || prefix === '' || prefix.length > MAX_PREFIX)) {
    throw new TokensFileError(`${at} (${name}): prefix must be a non-empty string of at most ${MAX_PREFIX} characters`)
  }
  return { hash: sha256, principal: { name, roles: set, prefix: prefix as string | undefined } }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Why a request is refused, or undefined when the principal may make it. */
export type Refusal = string | undefined

/**
 * Whether `principal` may do `action` on `keys` (empty for requests without keys).
 * Pure: the table test in test/unit/tokens.test.ts is its specification. A batch is
 * judged whole: any key outside the prefix refuses all of it.
 */
export function authorize (principal: Principal, action: Action, keys: string | readonly string[] = []): Refusal {
  if (!principal.roles.has(action)) return `${principal.name} lacks the ${action} role`
  const prefix = principal.prefix
  if (prefix !== undefined && action !== 'admin') {
    // One key (the single-key path) is checked without wrapping it in an array.
    if (typeof keys === 'string') return keys.startsWith(prefix) ? undefined : outsidePrefix(principal, prefix)
    for (const key of keys) {
      if (!key.startsWith(prefix)) return outsidePrefix(principal, prefix)
    }
  }
  return undefined
}

function outsidePrefix (principal: Principal, prefix: string): string {
  return `${principal.name} may only touch keys under ${JSON.stringify(prefix)}`
}

/**
 * The principals of a tokens file, reloaded on demand (SIGHUP). A file that fails to
 * parse on reload changes nothing: the old tokens stay in force and the error is
 * logged, so a typo in an edit cannot lock every client out (nor let anyone in).
 */
export class TokenStore {
  private byHash: Map<string, Principal>

  constructor (readonly path: string, private readonly log?: Logger) {
    this.byHash = TokenStore.read(path)
  }

  /** The principal a presented token names, or undefined. */
  lookup (token: string): Principal | undefined {
    if (!TOKEN_PATTERN.test(token)) return undefined
    return this.byHash.get(hashToken(token))
  }

  get size (): number {
    return this.byHash.size
  }

  /** Re-reads the file; true when the new tokens are in force. */
  reload (): boolean {
    try {
      this.byHash = TokenStore.read(this.path)
      this.log?.info({ event: 'tokens-reloaded', path: this.path, tokens: this.byHash.size }, 'tokens file reloaded')
      return true
    } catch (err) {
      this.log?.error({ event: 'tokens-reload-failed', path: this.path, err: (err as Error).message }, 'tokens file not reloaded; the previous tokens stay in force')
      return false
    }
  }

  private static read (path: string): Map<string, Principal> {
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      throw new TokensFileError(`cannot read the tokens file ${path}: ${(err as Error).message}`)
    }
    try {
      return parseTokensFile(text)
    } catch (err) {
      throw new TokensFileError(`${path}: ${(err as Error).message}`)
    }
  }
}
