import type tap from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isAlive, waitUntilDead } from './cluster'
import type { TestNetwork } from './netns'
import { etcdMemberArgs, waitEtcdHealthy, type EtcdMemberAddress } from '../../src/local/etcd-members'

export { etcdAvailable } from '../../src/local/etcd-members'

/**
 * Real etcd members (Debian's etcd-server) on 127.0.0.1 ports, each with its own data
 * dir in one temp dir, stopped by PID and removed by the test's teardown. `.ci/run`
 * installs the package; a test calls `etcdAvailable()` and skips with a message when
 * the binary is missing (a developer machine without it). The members' flags are
 * npm start's (src/local/etcd-members.ts); they are spawned here, not supervised, so a
 * member can also run inside a test network's namespace.
 */

export interface EtcdMember extends EtcdMemberAddress {
  proc: ChildProcess | undefined
}

export interface EtcdCluster {
  members: EtcdMember[]
  /** Every member's client URL (what --registry etcd://... lists). */
  endpoints: string[]
  /** SIGKILLs a member (its data dir stays, so it can be restarted). */
  kill: (i: number) => Promise<void>
  /** Starts a killed member again from its data dir. */
  restart: (i: number) => Promise<void>
  /** Output of member i (its log), for failure messages. */
  log: (i: number) => string
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/**
 * `network`: run member i inside host i of a test network (test/harness/netns.ts), on the
 * host's own address, so that a partition can cut it off; else all on 127.0.0.1 ports.
 */
export async function startEtcd (t: tap.Test, opts: { members?: number, name?: string, network?: TestNetwork } = {}): Promise<EtcdCluster> {
  const n = opts.members ?? 1
  const tmp = mkdtempSync(join(tmpdir(), `shardkv-etcd-${opts.name ?? 'test'}-`))
  const members: EtcdMember[] = []
  for (let i = 0; i < n; i++) {
    const host = opts.network?.hosts[i]
    const [client, peer] = host !== undefined ? [`${host.ip}:2379`, `${host.ip}:2380`] : [`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`]
    members.push({ name: `e${i}`, clientUrl: `http://${client}`, peerUrl: `http://${peer}`, dataDir: join(tmp, `e${i}`), proc: undefined })
  }
  const logs = members.map(() => [] as string[])
  const launch = (i: number): void => {
    const m = members[i] as EtcdMember
    const args = etcdMemberArgs(m, members, `shardkv-${tmp}`)
    const host = opts.network?.hosts[i]
    const proc = host !== undefined ? opts.network!.spawn(host, 'etcd', args) : spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (b: Buffer): void => {
      const lines = logs[i] as string[]
      lines.push(...b.toString('utf8').split('\n').filter((l) => l !== ''))
      if (lines.length > 200) lines.splice(0, lines.length - 200)
    }
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    m.proc = proc
  }
  const stopAll = async (): Promise<void> => {
    const pids = members.map((m) => m.proc?.pid).filter((p): p is number => p !== undefined && isAlive(p))
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await waitUntilDead(pids, 10_000).catch(() => undefined)
    rmSync(tmp, { recursive: true, force: true })
  }
  t.teardown(stopAll)
  for (let i = 0; i < n; i++) launch(i)
  await waitHealthy(members.map((m) => m.clientUrl), 60_000, () => logs.map((l, i) => `e${i}: ${l.slice(-5).join('\n')}`).join('\n'))
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    kill: async (i) => {
      const pid = members[i]?.proc?.pid
      if (pid === undefined) return
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      await waitUntilDead([pid], 10_000)
    },
    restart: async (i) => {
      launch(i)
      await waitHealthy([members[i]?.clientUrl as string], 60_000, () => (logs[i] ?? []).slice(-10).join('\n'))
    },
    log: (i) => (logs[i] ?? []).join('\n')
  }
}

/** Waits until every listed member answers /health with "true" (it has a leader and a quorum). */
async function waitHealthy (urls: string[], timeoutMs: number, why: () => string): Promise<void> {
  if (!await waitEtcdHealthy(urls, timeoutMs)) throw new Error(`etcd did not become healthy within ${timeoutMs} ms:\n${why()}`)
}
