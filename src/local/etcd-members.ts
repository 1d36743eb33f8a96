import { execFileSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { request } from '../http/undici'
import { spawnService, type LaunchedProcess } from './child'
import { etcdMemberHealthy } from '../registry/etcd/member-health'

/**
 * Real etcd members (Debian's `etcd-server` package, the `etcd` binary on PATH) for a
 * cluster on one machine: what `npm start -- --registry etcd` runs (three members under
 * <data-dir>/etcd) and what the integration tests run (test/harness/etcd.ts). One place
 * knows the flags that make a static cluster of them and how to tell that it serves.
 */

/** Where one member listens and keeps its data. */
export interface EtcdMemberAddress {
  /** The member's name in the cluster (`--name`, and in `--initial-cluster`). */
  name: string
  clientUrl: string
  peerUrl: string
  dataDir: string
}

/** Whether the `etcd` binary runs here. */
export function etcdAvailable (): boolean {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * The flags of member `m` of the static cluster `all`. `token` tells this cluster's
 * members from another's that happens to reuse a port. On a later start from the same
 * data dir etcd ignores the --initial-* flags and rejoins as the member it was.
 */
export function etcdMemberArgs (m: EtcdMemberAddress, all: readonly EtcdMemberAddress[], token: string): string[] {
  return [
    '--name', m.name, '--data-dir', m.dataDir,
    '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
    '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
    '--initial-cluster', all.map((x) => `${x.name}=${x.peerUrl}`).join(','),
    '--initial-cluster-token', token, '--initial-cluster-state', 'new',
    // Members on one machine answer each other within a millisecond: short heartbeats make
    // an election take about a second, not the default's several.
    '--heartbeat-interval', '100', '--election-timeout', '1000'
  ]
}

/**
 * Whether the member at `clientUrl` serves its client port. `/version` answers without
 * a quorum, so a member is ready on its own: one restarted while the others are down
 * is not taken for a member that fails to start.
 */
async function listening (clientUrl: string): Promise<string | undefined> {
  try {
    const res = await request(`${clientUrl}/version`, { headersTimeout: 2000, bodyTimeout: 2000 })
    await res.body.dump()
    return res.statusCode === 200 ? clientUrl : undefined
  } catch {
    return undefined
  }
}

export interface EtcdLaunchOptions {
  /** The process's name in events and errors (default the member's name). */
  name?: string
  logFile?: string
  /** Own process group, as shardkv's processes of a local cluster (src/local/child.ts). */
  detached?: boolean
  /** Default 60 s: a first start of a member on a loaded machine fsyncs its new WAL. */
  readyTimeoutMs?: number
}

/** Starts member `m` of `all`; resolves once it serves its client port (with or without a quorum). */
export async function launchEtcdMember (m: EtcdMemberAddress, all: readonly EtcdMemberAddress[], token: string, opts: EtcdLaunchOptions = {}): Promise<LaunchedProcess> {
  mkdirSync(m.dataDir, { recursive: true, mode: 0o700 })
  return await spawnService({
    name: opts.name ?? m.name,
    role: 'etcd',
    executable: 'etcd',
    args: etcdMemberArgs(m, all, token),
    ready: async () => await listening(m.clientUrl),
    logFile: opts.logFile,
    detached: opts.detached,
    readyTimeoutMs: opts.readyTimeoutMs ?? 60_000
  })
}

/**
 * Waits until every listed member answers /health with "true" (it has a leader and a
 * quorum); false after `timeoutMs`.
 */
export async function waitEtcdHealthy (clientUrls: readonly string[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await Promise.all(clientUrls.map(async (u) => await etcdMemberHealthy(u, 2000)))
    if (ok.every(Boolean)) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
