import type { CoordinatorConfig } from '../src/config/options'
import { loadPeerCredentials, type PeerCredentials } from '../src/auth/peer'
import type { Logger } from '../src/log'
import type { WireLeader } from '../src/protocol/wire'
import type { Coordinator } from './coordinator'
import { leadershipOf, type Leadership } from './leadership'
import { startStandby, type Standby } from './standby'
import { startActive, type ActiveCoordinator } from './active'

/**
 * A coordinator process: the control plane (DESIGN: the coordinator). It holds the map
 * in its registry, checks every node's health, grants primaries' leases, fails over,
 * rebalances, and serves the admin API, the cluster view and the dashboard; routers
 * relay their clients' admin calls here, so operators keep talking to a router.
 *
 * With the file registry it is the only coordinator and leads from the start. With etcd
 * it lives in terms: it stands by (campaigning, answering 503 `not_leader` on its ports),
 * leads once elected, and when it is deposed (its lease ran out on its own clock, or etcd
 * said so) it drops everything the term started — loops, listeners, in-memory state — and
 * stands by again on the same ports. Nothing of a term survives into the next: the next
 * term (this process's or a rival's) resumes from what etcd holds.
 */

export interface RunningCoordinator {
  url: string
  /** Where nodes and routers reach the peer endpoints (the advertised URL when one is set). */
  peerUrl: string
  /** The coordinator of the current term; undefined while standing by. */
  coordinator: () => Coordinator | undefined
  close: () => Promise<void>
  /** Re-reads the tokens file (SIGHUP); false when it is not configured, the file is bad, or it stands by. */
  reloadTokens: () => boolean
}

/** How long a deposed term may take to stop before the process gives up and exits (`onStuck`). */
export const TERM_STOP_BUDGET_MS = 15_000

export async function startCoordinator (config: CoordinatorConfig, log: Logger, onStuck: (why: string) => void = () => undefined): Promise<RunningCoordinator> {
  const leadership = leadershipOf({ registry: config.registry, cluster: config.registryCluster, dataDir: config.dataDir, ttlSeconds: config.leaderTtlSeconds, log })
  const credentials = loadPeerCredentials(config)
  if (leadership.kind === 'file') {
    const active = await startActive(config, log, leadership, credentials)
    return { ...active, coordinator: () => active.coordinator, close: async () => { await active.close(); await leadership.close() } }
  }
  return await startTerms(config, log, leadership, credentials, onStuck)
}

/** Standby, leader, standby again…: one port pair throughout, handed from one to the next. */
async function startTerms (config: CoordinatorConfig, log: Logger, leadership: Leadership, credentials: PeerCredentials, onStuck: (why: string) => void): Promise<RunningCoordinator> {
  const first = await startStandby(config, log, leadership, credentials)
  // The ports the first standby got (0 in the config: OS-chosen) are kept for every later term.
  const ports = { ...config, port: first.port, peerPort: first.peerPort ?? config.peerPort }
  const self: WireLeader = { url: first.url, peer: config.advertiseUrl !== '' ? config.advertiseUrl : first.peerUrl }
  let serving: Standby | ActiveCoordinator = first
  let stopped = false
  let stop: () => void = () => undefined
  const stopping = new Promise<string>((resolve) => { stop = () => resolve('closing') })
  const cycle = (async () => {
    while (!stopped) {
      await leadership.acquire(self)
      if (stopped) return
      const standby = serving
      let handedOver = false
      const handOver = async (): Promise<void> => { handedOver = true; await standby.close() }
      const term = await startActive(ports, log, leadership, credentials, handOver).catch((err: unknown) => {
        // Deposed while it started (its registry calls are given up as the term ends): stand by again.
        if (leadership.isLeader()) throw err
        log.warn({ event: 'coordinator-term-not-started', err }, 'deposed while starting its term: standing by again')
        return undefined
      })
      if (term === undefined) {
        if (handedOver) serving = await startStandby(ports, log, leadership, credentials)
        continue
      }
      serving = term
      const why = await Promise.race([leadership.deposed(), stopping])
      if (stopped) return
      log.warn({ event: 'coordinator-standing-by-again', why }, 'deposed: stopping this term and standing by again')
      await stopWithin(serving, TERM_STOP_BUDGET_MS)
      serving = await startStandby(ports, log, leadership, credentials)
    }
  })().catch((err: unknown) => {
    if (stopped) return
    log.fatal({ event: 'coordinator-term-failed', err }, 'could not change between standing by and leading')
    onStuck(`could not change terms: ${(err as Error).message}`)
  })
  return {
    url: first.url,
    peerUrl: self.peer,
    coordinator: () => 'coordinator' in serving ? serving.coordinator : undefined,
    close: async () => {
      stopped = true
      stop()
      await leadership.close()
      await cycle
      await serving.close()
    },
    reloadTokens: () => 'reloadTokens' in serving ? serving.reloadTokens() : false
  }
}

/** Closes a deposed term; one that cannot stop in time fails the process. */
async function stopWithin (term: ActiveCoordinator, budgetMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the deposed term did not stop within ${budgetMs} ms`)), budgetMs)
  })
  try {
    await Promise.race([term.depose(), late])
  } finally {
    clearTimeout(timer)
  }
}
