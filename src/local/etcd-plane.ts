import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from '../http/undici'
import type { EtcdMemberAddress } from './etcd-members'
import type { EtcdShape } from './control-shape'
import { COORDINATOR_OPTIONS } from '../config/options'
import { PROCESS_RESTART_POLICY, type RestartPolicyOptions } from '../supervision/restart-policy'

/**
 * A local cluster's control plane on etcd (`npm start -- --registry etcd`), as the
 * launcher runs it: where etcd is (its own members under <data-dir>/etcd, or --etcd),
 * the flags every process gets to find the map there, and which coordinator leads.
 */

export interface EtcdPlane {
  /** The cluster's name in etcd. */
  cluster: string
  /** Every member's client URL (the launcher's own, or --etcd's). */
  endpoints: string[]
  /** The members the launcher runs itself (empty with --etcd). */
  members: EtcdMemberAddress[]
  /** Ties the launcher's members together (`--initial-cluster-token`); the data dir names the cluster. */
  token: string
  coordinators: number
  routers: number
}

export function etcdPlaneOf (shape: EtcdShape, dataDir: string, host: string): EtcdPlane {
  const members = (shape.members ?? []).map((m) => ({
    name: m.name,
    clientUrl: `http://${host}:${m.clientPort}`,
    peerUrl: `http://${host}:${m.peerPort}`,
    dataDir: join(dataDir, 'etcd', m.name)
  }))
  return {
    cluster: shape.cluster,
    endpoints: shape.endpoints ?? members.map((m) => m.clientUrl),
    members,
    token: `shardkv-${dataDir}`,
    coordinators: shape.coordinators,
    routers: shape.routers
  }
}

/** What a node, a coordinator or a router is told to find the map by. */
export function registryArgs (plane: EtcdPlane): string[] {
  return ['--registry', `etcd://${plane.endpoints.map((e) => new URL(e).host).join(',')}`, '--registry-cluster', plane.cluster]
}

/** Exit code 3 of a coordinator: it lost the leader key and its term could not stop (coordinator/server.ts); it wants to campaign again. */
export function deposedRestart (status: { code: number | null }): string | undefined {
  return status.code === 3 ? 'lost the leadership (exit code 3)' : undefined
}

/**
 * A coordinator that died is started again only once the leader key's lease (default
 * TTL, plus a second) has lapsed: a standby that has been campaigning all along takes
 * over first, rather than racing the restarted one (the election is a poll, not a queue),
 * so the one that died comes back as a standby, and one that crashes on taking over
 * cannot keep snatching the leadership from a healthy rival.
 */
export function coordinatorPolicy (policy: RestartPolicyOptions = PROCESS_RESTART_POLICY): RestartPolicyOptions {
  const afterLease = COORDINATOR_OPTIONS.leaderTtlSeconds.default * 1000 + 1000
  return { ...policy, firstDelayMs: Math.max(policy.firstDelayMs, afterLease), baseDelayMs: Math.max(policy.baseDelayMs, afterLease) }
}

/**
 * The coordinator whose /healthz says `leader: true`, asking each in turn until one does
 * or `timeoutMs` passes (then undefined). `caFile`: the local CA of a --tls cluster.
 */
export async function leadingCoordinator<T> (coordinators: () => readonly T[], urlOf: (c: T) => string, caFile: string | undefined, timeoutMs: number): Promise<T | undefined> {
  const dispatcher = caFile === undefined ? undefined : new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } })
  const deadline = Date.now() + timeoutMs
  try {
    for (;;) {
      for (const c of coordinators()) {
        if (await leads(urlOf(c), dispatcher)) return c
      }
      if (Date.now() > deadline) return undefined
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  } finally {
    await dispatcher?.close()
  }
}

async function leads (url: string, dispatcher: Agent | undefined): Promise<boolean> {
  try {
    const res = await request(`${url}/healthz`, { ...(dispatcher === undefined ? {} : { dispatcher }), headersTimeout: 2000, bodyTimeout: 2000 })
    const body = await res.body.json() as { leader?: unknown }
    return res.statusCode === 200 && body.leader === true
  } catch {
    return false
  }
}
