import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hashToken, newToken } from '../src/auth/tokens'
import type { TargetCredentials } from './http-ops'

/**
 * The `auth` scenario's credentials: a tokens file with one read/write token, a
 * cluster secret and a self-signed certificate for 127.0.0.1, written once per run.
 * Each variant is the flags it gives the processes and what the load presents.
 */

export interface AuthVariant {
  /** Prefix of the measurement names ('' for the plain run). */
  label: string
  shardArgs: string[]
  routerArgs: string[]
  credentials: TargetCredentials
}

export function authVariants (dir: string): AuthVariant[] {
  mkdirSync(dir, { recursive: true })
  const token = newToken()
  const tokensFile = join(dir, 'tokens.json')
  const secretFile = join(dir, 'cluster-secret')
  writeFileSync(tokensFile, JSON.stringify({ tokens: [{ name: 'bench', sha256: hashToken(token), roles: ['read', 'write'] }] }), { mode: 0o600 })
  writeFileSync(secretFile, newToken(), { mode: 0o600 })
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  // The certificate a deployment would use for 127.0.0.1 (RSA 2048, the common default).
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  const ca = readFileSync(cert)
  const auth = ['--tokens-file', tokensFile, '--cluster-secret-file', secretFile]
  const tls = ['--tls-cert', cert, '--tls-key', key]
  return [
    { label: '', shardArgs: [], routerArgs: [], credentials: {} },
    { label: 'auth ', shardArgs: auth, routerArgs: auth, credentials: { token } },
    { label: 'TLS ', shardArgs: [], routerArgs: tls, credentials: { ca } },
    { label: 'auth+TLS ', shardArgs: auth, routerArgs: [...auth, ...tls], credentials: { token, ca } }
  ]
}
