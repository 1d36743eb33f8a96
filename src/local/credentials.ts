import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { loadPeerSecret } from '../auth/peer'
import { hashToken, isTokenShaped, newToken } from '../auth/tokens'

/**
 * The credentials of a local cluster (`npm start`), kept in its data dir so every
 * process it starts and every operator script finds them without being told:
 *
 * - `cluster-secret` — the secret every peer request carries (src/auth/peer.ts);
 * - `tokens.json` — the client tokens file, hashes only (format in /work/auth-plan.md);
 * - `admin-token` — the plain text of its `admin` token, the one copy there is.
 *
 * Created on the first start and never overwritten, so a restart keeps them (and the
 * tokens an operator handed out). Each file is written in full to a temp file and then
 * hard-linked into place: link() fails if the name exists, so creation is atomic and
 * exclusive at once (a rename would replace a file a concurrent start just made). All
 * three are mode 0600: tokens.json holds only hashes, but nobody else needs to read it.
 */

const CLUSTER_SECRET_FILE = 'cluster-secret'
const TOKENS_FILE = 'tokens.json'
const ADMIN_TOKEN_FILE = 'admin-token'

export interface LocalCredentials {
  clusterSecretFile: string
  tokensFile: string
  adminTokenFile: string
  /** The admin token's plain text when this call created it (to print once), else undefined. */
  createdAdminToken?: string
  /** Said to the operator: a credentials file others can read, an admin-token file that is gone. */
  warnings: string[]
}

/** The paths of a data dir's credentials (whether or not they exist). */
export function credentialPaths (dataDir: string): Pick<LocalCredentials, 'clusterSecretFile' | 'tokensFile' | 'adminTokenFile'> {
  return {
    clusterSecretFile: join(dataDir, CLUSTER_SECRET_FILE),
    tokensFile: join(dataDir, TOKENS_FILE),
    adminTokenFile: join(dataDir, ADMIN_TOKEN_FILE)
  }
}

/** Creates `path` with `text` (mode 0600) unless it exists; true when this call created it. */
function createExclusive (path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    linkSync(tmp, path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    unlinkSync(tmp)
  }
}

function exists (path: string): boolean {
  try {
    statSync(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

function readAdminToken (path: string): string {
  const token = readFileSync(path, 'utf8').trim()
  if (!isTokenShaped(token)) throw new Error(`${path} does not hold a shardkv token (skv_ and 43 base64url characters)`)
  return token
}

function tokensFileFor (adminToken: string): string {
  return JSON.stringify({ tokens: [{ name: 'admin', sha256: hashToken(adminToken), roles: ['admin', 'read', 'write'] }] }, null, 2) + '\n'
}

/** A credentials file that group or others may read: it is kept (never rewritten), but said. */
function permissionWarning (path: string): string | undefined {
  const mode = statSync(path).mode & 0o777
  return (mode & 0o077) === 0 ? undefined : `${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`
}

/**
 * The data dir's credentials, creating what is missing. The admin token is written
 * before tokens.json, and a missing tokens.json is made from an existing admin-token,
 * so a start interrupted in between never leaves a token file that no token opens.
 */
export function ensureCredentials (dataDir: string): LocalCredentials {
  mkdirSync(dataDir, { recursive: true })
  const paths = credentialPaths(dataDir)
  createExclusive(paths.clusterSecretFile, randomBytes(32).toString('base64url') + '\n')
  // Refuse a hand-edited secret the processes would refuse anyway, here, with its path.
  loadPeerSecret(paths.clusterSecretFile)

  let createdAdminToken: string | undefined
  const warnings: string[] = []
  if (!exists(paths.tokensFile)) {
    const fresh = newToken()
    if (createExclusive(paths.adminTokenFile, fresh + '\n')) createdAdminToken = fresh
    createExclusive(paths.tokensFile, tokensFileFor(readAdminToken(paths.adminTokenFile)))
  } else if (!exists(paths.adminTokenFile)) {
    warnings.push(`${paths.adminTokenFile} is gone; clients need a token listed in ${paths.tokensFile}`)
  }
  for (const path of [paths.clusterSecretFile, paths.tokensFile, paths.adminTokenFile]) {
    const warning = exists(path) ? permissionWarning(path) : undefined
    if (warning !== undefined) warnings.push(warning)
  }
  return { ...paths, ...(createdAdminToken === undefined ? {} : { createdAdminToken }), warnings }
}
