import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { AdminClient } from '../src/client/admin'
import { credentialPaths } from '../src/local/credentials'
import { existingTls } from '../src/local/certificates'
import type { LaunchCredentials } from '../src/local/launcher'

/**
 * What the operator scripts authenticate with, found where `npm start` keeps it
 * (src/local/credentials.ts) so that they work against a local cluster without being
 * told anything: the admin token for the router's admin API, and the credentials
 * files for the shard nodes they start; with `npm start -- --tls`, the local CA to trust
 * the router and the nodes by, and the certificate for the nodes they start. A cluster
 * without them (`npm start -- --insecure`, a hand-made one) gets requests without
 * credentials, as before.
 */

export const TOKEN_ENV = 'SHARDKV_TOKEN'

/** The `--token` and `--ca` options and their help lines, shared by the scripts that call the admin API. */
export const TOKEN_OPTION = { token: { type: 'string' }, ca: { type: 'string' } } as const
/** The help lines of --token and --ca, their text starting at `column` like the script's other options. */
export function tokenHelp (column: number): string {
  return `  ${'--token T'.padEnd(column - 2)}admin token (default: $${TOKEN_ENV}, else <cluster-dir>/admin-token when it exists)\n` +
    `  ${'--ca FILE'.padEnd(column - 2)}CA certificate (PEM) to trust an https router by (default: <cluster-dir>/tls/ca.pem when it exists)`
}

/** The admin token: --token, else $SHARDKV_TOKEN, else <cluster-dir>/admin-token; undefined when none is set. */
export function adminToken (flag: string | undefined, clusterDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = flag ?? env[TOKEN_ENV]
  if (given !== undefined && given.trim() !== '') return given.trim()
  const path = credentialPaths(resolve(clusterDir)).adminTokenFile
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read the admin token ${path}: ${(err as Error).message} (or pass --token)`)
  }
  return text.trim() === '' ? undefined : text.trim()
}

/** The PEM of the CA to trust: the --ca file, else the local CA of `npm start -- --tls` in the cluster dir, when there is one. */
export function clusterCa (clusterDir: string, caFile?: string): string | undefined {
  if (caFile !== undefined) return readFileSync(resolve(caFile), 'utf8')
  const tls = existingTls(resolve(clusterDir))
  return tls === undefined ? undefined : readFileSync(tls.ca, 'utf8')
}

/** The router's URL: --router, else the default port on 127.0.0.1 (https when the cluster dir has a local CA). */
export function routerUrl (flag: string | undefined, clusterDir: string): string {
  if (flag !== undefined) return flag.replace(/\/$/, '')
  return `${existingTls(resolve(clusterDir)) === undefined ? 'http' : 'https'}://127.0.0.1:8080`
}

/** What a script or `shardkv` subcommand is told about the router it talks to. */
export interface ConnectionValues { router?: string | undefined, token?: string | undefined, ca?: string | undefined, 'cluster-dir': string }

/** The admin client a script uses: its --router and --token, and the cluster dir's token and CA by default. */
export function scriptAdmin (values: ConnectionValues): AdminClient {
  const clusterDir = values['cluster-dir']
  return new AdminClient(routerUrl(values.router, clusterDir), { token: adminToken(values.token, clusterDir), ca: clusterCa(clusterDir, values.ca) })
}

/**
 * The credentials files a node started by a script gets: $SHARDKV_CLUSTER_SECRET_FILE /
 * $SHARDKV_TOKENS_FILE (what the node itself would read), else the cluster dir's own
 * files when both exist; undefined when there are none (an unauthenticated cluster).
 */
export function nodeCredentials (clusterDir: string, env: NodeJS.ProcessEnv = process.env): LaunchCredentials | undefined {
  const local = credentialPaths(resolve(clusterDir))
  const clusterSecretFile = nonEmpty(env.SHARDKV_CLUSTER_SECRET_FILE) ?? (existsSync(local.clusterSecretFile) ? local.clusterSecretFile : undefined)
  const tokensFile = nonEmpty(env.SHARDKV_TOKENS_FILE) ?? (existsSync(local.tokensFile) ? local.tokensFile : undefined)
  if (clusterSecretFile === undefined || tokensFile === undefined) return undefined
  // A node of a TLS cluster must serve HTTPS too: the router and the nodes' peers expect it.
  const tls = existingTls(resolve(clusterDir))
  return {
    clusterSecretFile: resolve(clusterSecretFile),
    tokensFile: resolve(tokensFile),
    ...(tls === undefined ? {} : { tlsCertFile: tls.cert, tlsKeyFile: tls.key, tlsCaFile: tls.ca })
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value
}
