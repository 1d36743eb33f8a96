import { join } from 'node:path'
import { etcdMemberHealthy } from '../src/registry/etcd/member-health'
import { Pool } from '../src/http/undici'
import { exchange } from '../src/http/exchange'
import type { BenchContext } from './context'
import { startDaemon, sleep, type Daemon } from './daemon'
import { anyFreePort } from '../src/local/ports'
import type { YcsbStore } from './ycsb-workloads'

/**
 * etcd as a YCSB peer: a 3-member cluster of Debian's etcd-server on 127.0.0.1 ports,
 * started like test/harness/etcd.ts starts it (default fsync; short heartbeats only so
 * that the first election takes well under a second), each member's data dir under the
 * scenario's temp dir, stopped by pid.
 *
 * The client is etcd's v3 JSON gateway (POST /v3/kv/range, /v3/kv/put, /v3/kv/txn with
 * base64 keys and values) over undici pools, one per member, requests spread round-robin
 * as etcd's own client balances endpoints: the same HTTP client stack shardkv's registry
 * uses; a gRPC client would be a new dependency. The gateway is a handicap for etcd (JSON
 * over HTTP/1.1, translated to gRPC inside the member, one request per connection at a
 * time instead of gRPC's multiplexed stream). Reads are etcd's default, linearizable
 * (ReadIndex through the leader), as shardkv's reads are never stale.
 */

export interface EtcdPeer {
  endpoints: string[]
  daemons: Daemon[]
}

export async function startEtcdCluster (ctx: BenchContext, binary: string, dir: string, members = 3): Promise<EtcdPeer> {
  const host = '127.0.0.1'
  const spec: Array<{ name: string, client: string, peer: string, dataDir: string }> = []
  for (let i = 0; i < members; i++) {
    spec.push({ name: `e${i}`, client: `http://${host}:${await anyFreePort(host)}`, peer: `http://${host}:${await anyFreePort(host)}`, dataDir: join(dir, `e${i}`) })
  }
  const initialCluster = spec.map((m) => `${m.name}=${m.peer}`).join(',')
  const daemons: Daemon[] = []
  try {
    for (const m of spec) {
      const d = startDaemon(`etcd-${m.name}`, binary, [
        '--name', m.name, '--data-dir', m.dataDir,
        '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
        '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
        '--initial-cluster', initialCluster, '--initial-cluster-token', `shardkv-bench-${dir}`, '--initial-cluster-state', 'new',
        '--heartbeat-interval', '100', '--election-timeout', '1000'
      ])
      daemons.push(d)
      ctx.trackOther(d)
    }
    await waitHealthy(spec.map((m) => m.client), daemons, 60_000)
    return { endpoints: spec.map((m) => m.client), daemons }
  } catch (err) {
    await ctx.stop({ launched: [], others: daemons }).catch(() => undefined)
    throw err
  }
}

async function waitHealthy (urls: string[], daemons: Daemon[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const dead = daemons.find((d) => d.exitCode() !== undefined)
    if (dead !== undefined) throw new Error(`${dead.name} exited (code ${String(dead.exitCode())}): ${dead.output().trim().split('\n').slice(-5).join('\n')}`)
    const ok = await Promise.all(urls.map(async (u) => await etcdMemberHealthy(u, 2000)))
    if (ok.every(Boolean)) return
    if (Date.now() > deadline) throw new Error(`etcd did not become healthy within ${timeoutMs} ms`)
    await sleep(100)
  }
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64')
const JSON_HEADERS = { 'content-type': 'application/json' }

export class EtcdStore implements YcsbStore {
  private readonly pools: Pool[]
  private next = 0

  constructor (endpoints: readonly string[], connections: number) {
    // Every loop may pick any member: each pool can hold every loop's request.
    this.pools = endpoints.map((e) => new Pool(e, { connections, pipelining: 1 }))
  }

  private async post (path: string, body: unknown): Promise<Record<string, unknown>> {
    const pool = this.pools[this.next++ % this.pools.length] as Pool
    const res = await exchange(pool, { path, method: 'POST', body: JSON.stringify(body), headers: JSON_HEADERS })
    const text = res.body.toString('utf8')
    if (res.status !== 200) throw new Error(`etcd ${path} answered ${res.status}: ${text.slice(0, 200)}`)
    return JSON.parse(text) as Record<string, unknown>
  }

  async insert (key: string, value: Buffer): Promise<void> {
    await this.post('/v3/kv/put', { key: b64(key), value: b64(value) })
  }

  update (key: string, value: Buffer): Promise<void> {
    return this.insert(key, value)
  }

  /** The key's mod_revision (a string: the gateway writes int64 as JSON strings). */
  private async range (key: string): Promise<string> {
    const r = await this.post('/v3/kv/range', { key: b64(key) })
    const kv = (r.kvs as Array<{ mod_revision?: string, value?: string }> | undefined)?.[0]
    if (kv === undefined) throw new Error(`etcd: ${key} not found`)
    return kv.mod_revision ?? '0'
  }

  async read (key: string): Promise<void> {
    await this.range(key)
  }

  /** Range, then a txn that puts only if the key's mod_revision is still the one read. */
  async readModifyWrite (key: string, value: Buffer): Promise<boolean> {
    const rev = await this.range(key)
    const k = b64(key)
    const r = await this.post('/v3/kv/txn', {
      compare: [{ key: k, target: 'MOD', result: 'EQUAL', mod_revision: rev }],
      success: [{ request_put: { key: k, value: b64(value) } }]
    })
    // The gateway leaves out false booleans.
    return r.succeeded === true
  }

  async close (): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close()))
  }
}
