import type { Logger } from '../src/log'
import { FileRegistry } from '../src/registry/file-registry'
import type { MapRegistry } from '../src/registry/registry'
import { parseRegistry, validateClusterName } from '../src/registry/registry-url'
import { EtcdGateway } from '../src/registry/etcd/gateway'
import { EtcdLeadership, parseLeader } from '../src/registry/etcd/leadership'
import { clusterKeys, EtcdRegistry } from '../src/registry/etcd/etcd-registry'
import { ConfigError } from '../src/config/options'
import type { WireLeader } from '../src/protocol/wire'

/**
 * Whether this coordinator may act, and the registry it acts through.
 *  - `file`: the only coordinator there is: it leads from the start, fence 0.
 *  - `etcd`: coordinators campaign for one leader key on a lease (EtcdLeadership); the
 *    winner's key revision is the fence its commands carry, and every registry write is
 *    guarded by that key. A leader that can no longer tell it leads (holdsLeadership on
 *    its own clock, checked every WATCHDOG_MS) is deposed: `onDeposed` runs, and the
 *    process ends rather than try to unwind half-done work (as Kubernetes' controllers
 *    do when they lose their lease); its supervisor starts it again as a candidate.
 */

const WATCHDOG_MS = 100

export interface Leadership {
  readonly kind: 'file' | 'etcd'
  readonly registry: MapRegistry
  /** Resolves once this coordinator leads (at once with the file registry). */
  acquire: (self: WireLeader) => Promise<void>
  isLeader: () => boolean
  /** The fence of this leadership (0 with the file registry, and before it leads). */
  fence: () => number
  /** Who leads now as the registry says (this one with the file registry). */
  leader: () => Promise<WireLeader | undefined>
  /** Gives the leadership up (revokes the lease) and closes the registry. */
  close: () => Promise<void>
}

export function leadershipOf (opts: { registry: string, cluster: string, dataDir: string, ttlSeconds: number, log: Logger, onDeposed: (why: string) => void }): Leadership {
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
    isLeader: () => true,
    fence: () => 0,
    leader: async () => self,
    close: async () => { await registry.close() }
  }
}

function electedLeadership (gateway: EtcdGateway, opts: { cluster: string, ttlSeconds: number, log: Logger, onDeposed: (why: string) => void }): Leadership {
  const keys = clusterKeys(opts.cluster)
  let election: EtcdLeadership | undefined
  let watchdog: NodeJS.Timeout | undefined
  let deposed = false
  const depose = (why: string): void => {
    if (deposed) return
    deposed = true
    if (watchdog !== undefined) clearInterval(watchdog)
    opts.log.error({ event: 'coordinator-deposed', why }, `no longer the leading coordinator: ${why}`)
    opts.onDeposed(why)
  }
  const registry = new EtcdRegistry({ gateway, cluster: opts.cluster, guard: () => { if (election === undefined) throw new Error('not campaigning'); return election.guard() } })
  return {
    kind: 'etcd',
    registry,
    acquire: async (me) => {
      election = new EtcdLeadership(gateway, {
        key: keys.leader,
        candidate: JSON.stringify(me),
        ttlSeconds: opts.ttlSeconds,
        onEvent: (event, detail) => { if (event === 'deposed') depose(detail) }
      })
      const fence = await election.campaign()
      opts.log.info({ event: 'coordinator-elected', fence, registry: registry.where }, `leading coordinator (fence ${fence})`)
      watchdog = setInterval(() => { if (election?.isLeader() !== true) depose('its leadership lease ran out on its own clock (etcd unreachable?)') }, WATCHDOG_MS)
      watchdog.unref()
    },
    isLeader: () => !deposed && election?.isLeader() === true,
    fence: () => election?.fence ?? 0,
    leader: async () => parseLeader((await new EtcdLeadership(gateway, { key: keys.leader, candidate: '', ttlSeconds: opts.ttlSeconds }).leader())?.candidate),
    close: async () => {
      if (watchdog !== undefined) clearInterval(watchdog)
      deposed = true
      await election?.resign()
      await gateway.close()
    }
  }
}
