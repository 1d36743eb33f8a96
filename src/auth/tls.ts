import { readFileSync } from 'node:fs'
import type { SecureContextOptions, TlsOptions } from 'node:tls'
import type { Agent } from 'undici'
import { ConfigError } from '../config/options'

/**
 * Mutual TLS between peers (--peer-tls-cert/-key/-ca). One certificate per process
 * serves both directions: the peer listener presents it and demands a client
 * certificate that chains to the CA; every peer client (coordinator, shipper, health
 * checker) presents it and verifies the server against the same CA. A connection
 * without a valid certificate is refused in the handshake, before any HTTP is read.
 * The cluster secret is still required on top (see peer.ts): the certificate says
 * "inside the cluster's PKI", the secret says "this cluster".
 */

export interface PeerTls {
  cert: string
  key: string
  ca: string
}

export interface PeerTlsFlags {
  peerTlsCert: string
  peerTlsKey: string
  peerTlsCa: string
}

/**
 * Reads the three PEM files, or none. Half a configuration is refused with one line:
 * a listener without a CA would accept any client, a client without a key would fail
 * every handshake, and neither is what someone who set one flag meant.
 */
export function loadPeerTls (flags: PeerTlsFlags): PeerTls | undefined {
  const given = { '--peer-tls-cert': flags.peerTlsCert, '--peer-tls-key': flags.peerTlsKey, '--peer-tls-ca': flags.peerTlsCa }
  const missing = Object.entries(given).filter(([, v]) => v === '').map(([k]) => k)
  if (missing.length === 3) return undefined
  if (missing.length > 0) throw new ConfigError(`mutual TLS for peers needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca together; missing ${missing.join(', ')}`)
  const read = (flag: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      throw new ConfigError(`${flag} ${path}: ${(err as Error).message}`)
    }
  }
  return { cert: read('--peer-tls-cert', flags.peerTlsCert), key: read('--peer-tls-key', flags.peerTlsKey), ca: read('--peer-tls-ca', flags.peerTlsCa) }
}

/** Options for an HTTPS peer listener: only clients whose certificate chains to the CA get through the handshake. */
export function peerServerTls (tls: PeerTls): TlsOptions {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true }
}

/** undici `connect` options for a peer client: present our certificate, trust only the CA. */
function peerClientTls (tls: PeerTls): SecureContextOptions & { rejectUnauthorized: true } {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, rejectUnauthorized: true }
}

/**
 * undici Agent or Pool options with the peer TLS added to their `connect` (unchanged
 * without peer TLS). For every connection a process opens to another process of its
 * cluster: peer listeners, and also shard nodes' data ports, which a router reaches as
 * a peer — a cluster with peer TLS serves its data ports over HTTPS with certificates
 * of the same CA (npm start -- --tls), so the peer CA is what verifies them. The
 * client certificate is presented there too; a data listener does not ask for one.
 */
export function withPeerTls<T extends Agent.Options> (options: T, tls: PeerTls | undefined): T {
  if (tls === undefined) return options
  const connect = typeof options.connect === 'object' && options.connect !== null ? options.connect : {}
  return { ...options, connect: { ...connect, ...peerClientTls(tls) } }
}
