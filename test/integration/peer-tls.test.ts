import t, { type Test } from 'tap'
import { peerAuth, peerCall, type PeerAuth } from '../harness/peer-auth'
import { startCluster, type TestCluster, type ClusterNode } from '../harness/cluster'
import { allReplicasInSync, primaryUrl, replicaUrls } from '../harness/cluster-view'
import { INTERNAL, INTERNAL_REPLICATION } from '../../src/protocol/wire'
import { kvPath } from '../../src/protocol/key'

/**
 * Mutual TLS on the peer listeners (--peer-tls-cert/-key/-ca, certificates made with
 * openssl in the test): replication, map installs, leases and in-sync asks all run
 * over it, and a client without a certificate from the cluster's CA is refused in the
 * TLS handshake, before any HTTP; one with a good certificate still needs the secret.
 */

async function peerOfNode (c: TestCluster, node: ClusterNode): Promise<{ url: string, tls: boolean }> {
  const h = await c.health(node) as unknown as { peerPort?: number, peerTls?: boolean }
  return { url: `https://127.0.0.1:${String(h.peerPort)}`, tls: h.peerTls === true }
}

/** The error a request fails with, or its status when it did not fail. */
async function outcome (call: Promise<{ status: number }>): Promise<string> {
  try {
    return `HTTP ${(await call).status}`
  } catch (err) {
    const e = err as { code?: string, cause?: { code?: string }, message?: string }
    return `refused: ${e.code ?? ''} ${e.cause?.code ?? ''} ${e.message ?? ''}`
  }
}

async function strangersAreRefused (t: Test, auth: PeerAuth, url: string, what: string, method: 'GET' | 'POST' = 'GET', body?: unknown): Promise<void> {
  const pki = auth.pki()
  if (pki === undefined) throw new Error('no PKI')
  const noCert = await outcome(peerCall(method, url, { headers: auth.headers(), body, tls: { ca: pki.ca } }))
  t.match(noCert, /^refused/, `${what}: a client without a certificate is refused in the handshake (${noCert.trim()})`)
  const rogue = await outcome(peerCall(method, url, { headers: auth.headers(), body, tls: { ca: pki.ca, cert: pki.rogueCert, key: pki.rogueKey } }))
  t.match(rogue, /^refused/, `${what}: a certificate from another CA is refused in the handshake (${rogue.trim()})`)
  const plain = await outcome(peerCall(method, url.replace('https:', 'http:'), { headers: auth.headers(), body }))
  t.notMatch(plain, /HTTP 2\d\d/, `${what}: plain HTTP gets nothing (${plain.trim()})`)
  const noSecret = await peerCall(method, url, { body, tls: { ca: pki.ca, cert: pki.cert, key: pki.key } })
  t.equal(`${noSecret.status} ${String(noSecret.body?.error)}`, '401 unauthenticated', `${what}: a good certificate without the secret: 401`)
}

t.test('peer mutual TLS: the cluster replicates over it; strangers without the CA\'s certificate are refused in the handshake', async (t) => {
  const auth = peerAuth({ tls: true })
  const c = await startCluster(t, { name: 'peer-tls', groups: 1, replicas: 1, prepare: auth.prepare })
  const view = await c.waitForView(allReplicasInSync, 'the replica in sync over mutual TLS', 60_000)
  const primary = c.byUrl(primaryUrl(view, 'g1'))
  const replica = c.byUrl(replicaUrls(view, 'g1')[0] as string)
  const pki = auth.pki()
  if (pki === undefined) throw new Error('no PKI')
  const good = { ca: pki.ca, cert: pki.cert, key: pki.key }

  for (let i = 0; i < 10; i++) {
    const res = await c.http.request('PUT', c.routerUrl + kvPath(`tls/${i}`), { body: `v${i}` })
    t.equal(res.status, 201, `PUT tls/${i} acknowledged (replicated over mutual TLS)`)
  }
  const primaryPeer = await peerOfNode(c, primary)
  const replicaPeer = await peerOfNode(c, replica)
  t.ok(primaryPeer.tls && replicaPeer.tls, '/healthz reports peerTls')
  const [p, r] = await Promise.all([primaryPeer, replicaPeer].map(async (n) => (await peerCall('GET', n.url + INTERNAL.stats, { headers: auth.headers(), tls: good })).body))
  t.equal(r?.position, p?.position, `the replica holds what the primary holds (position ${String(p?.position)})`)
  t.equal(r?.keys, 10, 'ten keys on the replica')

  const record = await peerCall('GET', primaryPeer.url + INTERNAL.map, { headers: auth.headers(), tls: good })
  const routerPeer = String(record.body?.coordinator)
  t.match(routerPeer, /^https:\/\/127\.0\.0\.1:\d+$/, `nodes know the coordinator by its https peer URL (${routerPeer})`)
  t.ok((record.body?.map?.groups?.[0]?.nodes as Array<{ peer?: string }>).every((n) => n.peer?.startsWith('https://') === true), 'the map gives https peer URLs')

  await strangersAreRefused(t, auth, primaryPeer.url + INTERNAL.stats, 'primary')
  await strangersAreRefused(t, auth, replicaPeer.url + INTERNAL.stats, 'replica')
  await strangersAreRefused(t, auth, routerPeer + INTERNAL_REPLICATION.inSync, 'router', 'POST', { group: 'g1', url: replica.url, inSync: false, term: 1 })
})
