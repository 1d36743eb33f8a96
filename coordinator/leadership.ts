import type { Logger } from '../src/log'
import { FileRegistry } from '../src/registry/file-registry'
import type { MapRegistry } from '../src/registry/registry'
import { parseRegistry, validateClusterName } from '../src/registry/registry-url'
import { EtcdGateway } from '../src/registry/etcd/gateway'
import { EtcdLeadership, parseLeader } from '../src/registry/etcd/leadership'
import { clusterKeys, EtcdRegistry } from '../src/registry/etcd/etcd-registry'
import { ConfigError } from '../src/config/options'
import type { WireLeader, WireNodeRegistration, WireRouterRegistration } from '../src/protocol/wire'
import { registeredNodes, registeredRouters } from '../src/registry/etcd/directory'

/**
 * Whether this coordinator may act, and the registry it acts through.
 *  - `file`: the only coordinator there is: it leads from the start, fence 0.
 *  - `etcd`: coordinators campaign for one leader key on a lease (EtcdLeadership); the
 *    winner's key revision is the fence its commands carry, and every registry write is
 *    guarded by that key. A leader that can no longer tell it leads (holdsLeadership on
 *    its own clock, checked every WATCHDOG_MS) is deposed: `deposed()` resolves, the
 *    term's work is dropped (coordinator/server.ts) and it may campaign again.
 */

const WATCHDOG_MS = 100

export interface Leadership {
  readonly kind: 'file' | 'etcd'
  readonly registry: MapRegistry
  /** Resolves once this coordinator leads (at once with the file registry); again after a deposition, for the next term. */
  acquire: (self: WireLeader) => Promise<void>
  /** Resolves, with why, when the current term ends (never with the file registry). */
  deposed: () => Promise<string>
  isLeader: () => boolean
  /** The fence of this leadership (0 with the file registry, and before it leads). */
  fence: () => number
  /** Who leads now as the registry says (this one with the file registry); `signal` gives the read up. */
  leader: (signal?: AbortSignal) => Promise<WireLeader | undefined>
  /** The nodes and routers that registered themselves (etcd); undefined with the file registry. */
  directory?: ServiceDirectory
  /** Gives the leadership up (revokes the lease) and closes the registry. */
  close: () => Promise<void>
}

export interface ServiceDirectory {
  nodes: () => Promise<WireNodeRegistration[]>
  routers: () => Promise<WireRouterRegistration[]>
}

export function leadershipOf (opts: { registry: string, cluster: string, dataDir: string, ttlSeconds: number, log: Logger }): Leadership {
  let spec
  try {
    spec = parseRegistry(opts.registry)
    validateClusterName(opts.cluster)
  } catch (err) {
    throw new ConfigError((err as Error).message)
  }
  if (spec.kind === 'file') return soleLeadership(new FileRegistry(opts.dataDir))
  return electedLeadership(new EtcdGateway({ endpoints: spec.endpoints }), opts)
}

function soleLeadership (registry: MapRegistry): Leadership {
  let self: WireLeader | undefined
  return {
    kind: 'file',
    registry,
    acquire: async (me) => { self = me },
    deposed: async () => await new Promise<string>(() => undefined),
    isLeader: () => true,
    fence: () => 0,
    leader: async () => self,
    close: async () => { await registry.close() }
  }
}

function electedLeadership (gateway: EtcdGateway, opts: { cluster: string, ttlSeconds: number, log: Logger }): Leadership {
  const keys = clusterKeys(opts.cluster)
  let election: EtcdLeadership | undefined
  let watchdog: NodeJS.Timeout | undefined
  let deposed = true
  let closed = false
  let termEnded: (why: string) => void = () => undefined
  let termEnd = new Promise<string>(() => undefined)
  // Aborted as the term ends: the registry calls it still has in flight are given up.
  let termCalls = new AbortController()
  const depose = (why: string): void => {
    if (deposed) return
    deposed = true
    if (watchdog !== undefined) clearInterval(watchdog)
    termCalls.abort()
    opts.log.error({ event: 'coordinator-deposed', why }, `no longer the leading coordinator: ${why}`)
    // The lease may still be alive in etcd (deposed on this clock only): give the key up now
    // rather than make every candidate, this one included, wait out the TTL.
    void election?.resign()
    termEnded(why)
  }
  const registry = new EtcdRegistry({
    gateway,
    cluster: opts.cluster,
    guard: () => { if (election === undefined) throw new Error('not campaigning'); return election.guard() },
    termSignal: () => termCalls.signal
  })
  return {
    kind: 'etcd',
    registry,
    directory: { nodes: async () => await registeredNodes(gateway, opts.cluster), routers: async () => await registeredRouters(gateway, opts.cluster) },
    acquire: async (me) => {
      if (closed) throw new Error('the leadership was closed')
      const term = new EtcdLeadership(gateway, {
        key: keys.leader,
        candidate: JSON.stringify(me),
        ttlSeconds: opts.ttlSeconds,
        onEvent: (event, detail) => { if (event === 'deposed') depose(detail) }
      })
      election = term
      termEnd = new Promise<string>((resolve) => { termEnded = resolve })
      termCalls = new AbortController()
      const fence = await term.campaign()
      deposed = false
      opts.log.info({ event: 'coordinator-elected', fence, registry: registry.where }, `leading coordinator (fence ${fence})`)
      watchdog = setInterval(() => { if (!term.isLeader()) depose('its leadership lease ran out on its own clock (etcd unreachable?)') }, WATCHDOG_MS)
      watchdog.unref()
    },
    deposed: async () => await termEnd,
    isLeader: () => !deposed && election?.isLeader() === true,
    fence: () => election?.fence ?? 0,
    leader: async (signal) => parseLeader((await new EtcdLeadership(gateway, { key: keys.leader, candidate: '', ttlSeconds: opts.ttlSeconds }).leader(signal))?.candidate),
    close: async () => {
      closed = true
      if (watchdog !== undefined) clearInterval(watchdog)
      deposed = true
      termCalls.abort()
      termEnded('closing')
      await election?.resign()
      await gateway.close()
    }
  }
}
