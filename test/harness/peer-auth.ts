import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { HEADER } from '../../src/protocol/wire'

/**
 * Peer authentication for test clusters: `peerAuth()` gives a `prepare` for
 * startCluster (test/harness/cluster.ts) that writes a cluster secret
 * (and, with `tls`, a CA and a certificate made with `openssl`) into the cluster's temp
 * dir and returns the flags every process gets; `peerCall` sends one request to a peer
 * listener the way an outsider or a peer would (any headers, with or without a client
 * certificate), never throwing on an HTTP status.
 */

export interface PeerPki {
  ca: string
  cert: string
  key: string
  /** A certificate and key from another CA: what a stranger with "a" certificate holds. */
  rogueCert: string
  rogueKey: string
}

export interface PeerAuth {
  prepare: (tmp: string) => { shardArgs: string[], routerArgs: string[] }
  /** The secret's header, for a request that should get through. */
  headers: () => Record<string, string>
  /** PEM contents (after setup, with `tls`). */
  pki: () => PeerPki | undefined
}

export function peerAuth (opts: { tls?: boolean, peerPort?: boolean } = {}): PeerAuth {
  const secret = randomBytes(32).toString('base64url')
  let pki: PeerPki | undefined
  return {
    prepare: (tmp) => {
      const file = join(tmp, 'cluster-secret')
      writeFileSync(file, secret + '\n', { mode: 0o600 })
      const args = ['--cluster-secret-file', file]
      if (opts.peerPort !== false) args.push('--peer-port', '0')
      if (opts.tls === true) {
        const files = makePki(join(tmp, 'pki'))
        pki = { ca: readFileSync(files.ca, 'utf8'), cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8'), rogueCert: readFileSync(files.rogueCert, 'utf8'), rogueKey: readFileSync(files.rogueKey, 'utf8') }
        args.push('--peer-tls-cert', files.cert, '--peer-tls-key', files.key, '--peer-tls-ca', files.ca)
      }
      return { shardArgs: args, routerArgs: args }
    },
    headers: () => ({ [HEADER.peerAuth]: secret }),
    pki: () => pki
  }
}

function openssl (dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA and one certificate for every peer (127.0.0.1, serverAuth + clientAuth), plus a stranger's pair. */
function makePki (dir: string): { ca: string, cert: string, key: string, rogueCert: string, rogueKey: string } {
  mkdirSync(dir, { recursive: true })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  writeFileSync(join(dir, 'peer.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
  for (const name of ['ca', 'rogue-ca']) {
    openssl(dir, ['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=shardkv-test-${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  }
  for (const [name, ca] of [['peer', 'ca'], ['rogue', 'rogue-ca']]) {
    openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=127.0.0.1'])
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', 'peer.ext'])
  }
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'peer.pem'), key: join(dir, 'peer.key'), rogueCert: join(dir, 'rogue.pem'), rogueKey: join(dir, 'rogue.key') }
}

export interface PeerReply { status: number, body: any, text: string }

/**
 * One request to 127.0.0.1 (only), on a fresh connection. `tls`: the CA to verify the
 * server by, and the client certificate to present (none: a client without one).
 */
export async function peerCall (method: 'GET' | 'PUT' | 'POST', url: string, opts: { headers?: Record<string, string>, body?: unknown, tls?: { ca: string, cert?: string, key?: string } } = {}): Promise<PeerReply> {
  const u = new URL(url)
  if (u.hostname !== '127.0.0.1') throw new Error(`test traffic must go to 127.0.0.1 only, refused ${url}`)
  const agent = new Agent({ connect: { ...opts.tls, rejectUnauthorized: true, timeout: 10_000 } })
  try {
    const json = opts.body !== undefined
    const res = await request(url, {
      method,
      dispatcher: agent,
      headers: { ...(json ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      body: json ? JSON.stringify(opts.body) : undefined,
      headersTimeout: 15_000,
      bodyTimeout: 15_000
    })
    const text = await res.body.text()
    let body: unknown
    try { body = text === '' ? undefined : JSON.parse(text) } catch { body = undefined }
    return { status: res.statusCode, body, text }
  } finally {
    await agent.close()
  }
}
