import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { CoordinatorConfig } from '../src/config/options'
import { createApiServer, loadListenerTls } from '../src/http/server'
import { listenUrl } from '../src/http/listen-url'
import { peerServerTls } from '../src/auth/tls'
import type { PeerCredentials } from '../src/auth/peer'
import { ShardKvError } from '../src/protocol/errors'
import { HEALTH_PATH } from '../src/protocol/wire'
import type { Logger } from '../src/log'
import type { Leadership } from './leadership'

/**
 * A coordinator that does not lead (etcd registry): it holds its ports so that it is
 * ready, as a process, the moment it is elected, and so that anyone who reaches it
 * learns where to go. /healthz says `leader: false` (an orchestrator keeps it running,
 * a load balancer sends it nothing); every other call is 503 `not_leader`, naming the
 * leader when etcd says who it is. Routers relay to it only from a stale read of the
 * leader key, and take its not_leader as "ask etcd again" (router/control-relay.ts).
 */

/** How long a refusal waits to name the leader (a read of etcd) before it goes without the name. */
const LEADER_HINT_MS = 1000

export interface Standby {
  url: string
  port: number
  peerUrl: string
  peerPort: number | undefined
  close: () => Promise<void>
}

export async function startStandby (config: CoordinatorConfig, log: Logger, leadership: Leadership, credentials: PeerCredentials): Promise<Standby> {
  const tls = loadListenerTls(config.tlsCert, config.tlsKey)
  const app = createApiServer({ log, maxValueBytes: 1024, limits: config, tls })
  const peerApp = config.peerPort >= 0 ? createApiServer({ log, maxValueBytes: 1024, limits: config, ...(credentials.tls !== undefined ? { tls: peerServerTls(credentials.tls) } : {}) }) : undefined
  const peerPort = (): number | undefined => (peerApp?.server.address() as AddressInfo | null | undefined)?.port
  app.get(HEALTH_PATH, (_request, reply) => {
    void reply.send({ status: 'ok', role: 'coordinator', epoch: 0, leader: false, ...(peerApp === undefined ? {} : { peerPort: peerPort(), peerTls: credentials.tls !== undefined }) })
  })
  refuseEverythingElse(app, leadership)
  if (peerApp !== undefined) refuseEverythingElse(peerApp, leadership)
  await app.listen({ host: config.host, port: config.port })
  await peerApp?.listen({ host: config.host, port: config.peerPort })
  const url = listenUrl(app.server.address() as AddressInfo, tls !== undefined)
  const peerUrl = peerApp === undefined ? url : listenUrl(peerApp.server.address() as AddressInfo, credentials.tls !== undefined)
  log.info({ event: 'coordinator-standby', url, registry: leadership.registry.where }, 'standing by: campaigning for the leadership')
  return {
    url,
    port: (app.server.address() as AddressInfo).port,
    peerUrl,
    peerPort: peerPort(),
    close: async () => { await Promise.all([app.close(), peerApp?.close()]) }
  }
}

function refuseEverythingElse (app: FastifyInstance, leadership: Leadership): void {
  app.all('*', async () => {
    // Only a hint: etcd without a quorum answers no read, and the refusal must not wait on it.
    const leader = await leadership.leader(AbortSignal.timeout(LEADER_HINT_MS)).then((l) => l?.url ?? 'none', () => undefined)
    const who = leader === undefined ? 'etcd did not say who leads (no quorum?)' : leader === 'none' ? 'no coordinator leads right now' : `the leader is ${leader}`
    throw new ShardKvError('not_leader', `this coordinator is standing by; ${who}`)
  })
}
