import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * The TLS files of a local cluster (`npm start -- --tls`), kept in `<data-dir>/tls/`
 * (mode 0700): a CA made for this cluster alone (`ca.pem`, `ca.key`) and one
 * certificate for 127.0.0.1 and localhost (`cert.pem`, `key.pem`) that every process
 * uses both ways — as server on its client and peer listeners, and as client toward
 * its peers (serverAuth + clientAuth). One certificate suffices because every
 * process of a local cluster runs on the same machine under the same user; a cluster
 * across machines gives each process its own.
 *
 * Made with the `openssl` command (Node has no API to sign certificates) on the first
 * start and never overwritten: clients keep trusting the same `ca.pem` across
 * restarts. The four files are made in a temp dir and hard-linked into place, the
 * certificate first and the CA last (a set is complete when `ca.pem` exists).
 */

const TLS_DIR = 'tls'

export interface LocalTlsFiles {
  dir: string
  ca: string
  caKey: string
  cert: string
  key: string
}

/** The openssl command is not installed: said to the operator in one line. */
export class OpensslMissingError extends Error {
  override readonly name = 'OpensslMissingError'
}

/** Where a data dir's TLS files are (whether or not they exist). */
export function tlsPaths (dataDir: string): LocalTlsFiles {
  const dir = join(dataDir, TLS_DIR)
  return { dir, ca: join(dir, 'ca.pem'), caKey: join(dir, 'ca.key'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }
}

/** The data dir's TLS files when they have been made, else undefined. */
export function existingTls (dataDir: string): LocalTlsFiles | undefined {
  const paths = tlsPaths(dataDir)
  return existsSync(paths.ca) && existsSync(paths.cert) && existsSync(paths.key) ? paths : undefined
}

function openssl (cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer }
    if (e.code === 'ENOENT') throw new OpensslMissingError('--tls needs the openssl command to make the local CA and certificate; install openssl (e.g. apt-get install openssl) and start again')
    throw new Error(`openssl ${args[0] ?? ''} failed: ${e.stderr?.toString().trim() ?? e.message}`)
  }
}

/** Makes the CA and the certificate in `work` (a fresh private dir). */
function makeFiles (work: string): void {
  // P-256 keys: small, fast handshakes, accepted by every TLS client in use.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  writeFileSync(join(work, 'cert.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
  openssl(work, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650', '-subj', '/CN=shardkv local CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  openssl(work, ['req', ...ec, '-keyout', 'key.pem', '-out', 'cert.csr', '-subj', '/CN=127.0.0.1'])
  openssl(work, ['x509', '-req', '-in', 'cert.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${Date.now().toString(16)}`,
    '-out', 'cert.pem', '-days', '825', '-extfile', 'cert.ext'])
  for (const key of ['ca.key', 'key.pem']) chmodSync(join(work, key), 0o600)
}

/** Links `from` to `to` unless `to` exists (another start made it: keep theirs). */
function linkNew (from: string, to: string): void {
  try {
    linkSync(from, to)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
}

/**
 * The data dir's TLS files, made when `ca.pem` is missing. Throws OpensslMissingError
 * (one line for the operator) when they must be made and openssl is not installed.
 */
export function ensureTls (dataDir: string): LocalTlsFiles & { created: boolean } {
  const paths = tlsPaths(dataDir)
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 })
  chmodSync(paths.dir, 0o700)
  if (existingTls(dataDir) !== undefined) return { ...paths, created: false }
  const work = mkdtempSync(join(paths.dir, '.new-'))
  try {
    makeFiles(work)
    // Without ca.pem the set is partial (a start interrupted while linking): a certificate
    // of a CA nobody has is of no use to anyone, so it goes. The CA last: its presence says the set is whole.
    if (!existsSync(paths.ca)) for (const file of [paths.key, paths.cert, paths.caKey]) rmSync(file, { force: true })
    for (const name of ['key.pem', 'cert.pem', 'ca.key', 'ca.pem']) linkNew(join(work, name), join(paths.dir, name))
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  return { ...paths, created: true }
}

/**
 * Whether a local cluster runs with TLS, and its files: `--tls` on a first start (no
 * nodes file yet) chooses it, the nodes file's `"tls": true` keeps it on every later
 * start. Switching an existing cluster is refused: its persisted map, its scripts and
 * its clients name the other scheme.
 */
export function decideLocalTls (dataDir: string, flag: boolean, recorded: { exists: boolean, tls: boolean }): (LocalTlsFiles & { created: boolean }) | undefined {
  if (flag && recorded.exists && !recorded.tls) {
    throw new Error(`${dataDir} holds a cluster started without --tls (its map names http:// URLs); start it without --tls, or remove ${dataDir} to start afresh with TLS`)
  }
  if (!flag && !recorded.tls) return undefined
  return ensureTls(dataDir)
}
