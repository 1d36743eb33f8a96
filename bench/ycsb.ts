import { resolve } from 'node:path'
import { Pool, request } from '../src/http/undici'
import { exchange } from '../src/http/exchange'
import { kvPath } from '../src/protocol/key'
import { CLUSTER_PATH } from '../src/protocol/wire'
import type { ClusterView } from '../src/protocol/cluster-view'
import { startBenchCluster, type BenchCluster } from './cluster'
import { ensureBinary, sleep } from './daemon'
import { EtcdStore, startEtcdCluster } from './etcd-peer'
import type { YcsbSystem } from './options'
import { directClient } from './client-ops'
import { PreconditionFailedError, type KvClient } from '../src/client'

import { RedisStore, startRedis } from './redis-peer'
import type { Suite } from './suite'
import { WORKLOADS, workloadOperation, ycsbKey, type YcsbStore } from './ycsb-workloads'
import { warmUp } from './engine'
import { cpuSeconds } from './proc-cpu'

/**
 * The ycsb scenario (issue 10): the same YCSB phases, over the same closed loops, against
 * shardkv as `npm start` runs it (through the router, then through the direct client),
 * shardkv without replicas, a 3-member etcd and redis with
 * appendfsync always, one after another in one run, each system started here and stopped
 * before the next (on 2 cores, an idle system still costs the measured one CPU).
 */

const VALUE_BYTES = 100
/** Seeds per workload, so that every system sees the same key sequence (per loop order). */
const SEED = 0x5CB

interface System {
  store: YcsbStore
  target: string
  /** The server processes whose CPU counts. */
  pids: number[]
  stop: () => Promise<void>
}

/** GET, PUT, and GET then PUT with If-Match through the router. */
class ShardkvStore implements YcsbStore {
  private readonly pool: Pool
  private readonly putHeaders = { 'content-type': 'application/octet-stream' }

  constructor (url: string, connections: number) {
    this.pool = new Pool(url, { connections, pipelining: 1 })
  }

  private async get (key: string): Promise<string> {
    const path = kvPath(key)
    const res = await exchange(this.pool, { path, method: 'GET' })
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`)
    const etag = res.headers.etag
    return typeof etag === 'string' ? etag : ''
  }

  private async put (key: string, value: Buffer, ifMatch?: string): Promise<number> {
    const path = kvPath(key)
    const headers = ifMatch === undefined ? this.putHeaders : { ...this.putHeaders, 'if-match': ifMatch }
    const res = await exchange(this.pool, { path, method: 'PUT', body: value, headers })
    if (res.status !== 200 && res.status !== 201 && !(ifMatch !== undefined && res.status === 412)) {
      throw new Error(`PUT ${path} answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`)
    }
    return res.status
  }

  async insert (key: string, value: Buffer): Promise<void> { await this.put(key, value) }
  async update (key: string, value: Buffer): Promise<void> { await this.put(key, value) }
  async read (key: string): Promise<void> { await this.get(key) }

  async readModifyWrite (key: string, value: Buffer): Promise<boolean> {
    const etag = await this.get(key)
    return await this.put(key, value, etag) !== 412
  }

  close (): Promise<void> {
    return this.pool.close()
  }
}

/** The same operations through the shardkv client in direct mode: the client-side ring, no router hop. */
class DirectStore implements YcsbStore {
  private readonly opts = { contentType: 'application/octet-stream' }

  constructor (private readonly client: KvClient) {}

  async insert (key: string, value: Buffer): Promise<void> { await this.client.put(key, value, this.opts) }
  async update (key: string, value: Buffer): Promise<void> { await this.client.put(key, value, this.opts) }
  async read (key: string): Promise<void> { await this.client.get(key) }

  async readModifyWrite (key: string, value: Buffer): Promise<boolean> {
    const { etag } = await this.client.get(key)
    try {
      await this.client.put(key, value, { ...this.opts, ifMatch: etag })
      return true
    } catch (err) {
      if (err instanceof PreconditionFailedError) return false
      throw err
    }
  }

  close (): Promise<void> {
    return this.client.close()
  }
}

async function waitInSync (routerUrl: string, signal: AbortSignal, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    signal.throwIfAborted()
    try {
      const res = await request(routerUrl + CLUSTER_PATH, { headersTimeout: 2000, bodyTimeout: 2000 })
      const view = await res.body.json() as ClusterView
      if (res.statusCode === 200 && view.groups.every((g) => g.nodes.every((n) => n.role === 'primary' || (n.inSync === true && n.health === 'up')))) return
    } catch { /* busy: ask again */ }
    if (Date.now() > deadline) throw new Error(`replicas not in sync within ${timeoutMs} ms`)
    await sleep(100)
  }
}

/** `direct`: the replicated cluster under the shardkv client in direct mode instead of the router. */
async function shardkv (suite: Suite, replicas: number, direct = false): Promise<System> {
  const { ctx } = suite
  const { groups, cpuProf } = ctx.opts
  // Only the replicated (quick-start) shape is profiled: it is the one with targets.
  const prof = cpuProf !== undefined && replicas > 0 ? ['--cpu-prof', `--cpu-prof-dir=${resolve(cpuProf)}`] : undefined
  const cluster: BenchCluster = await startBenchCluster(ctx, {
    name: direct ? 'ycsb-direct' : replicas > 0 ? 'ycsb-shardkv' : 'ycsb-unreplicated',
    groups,
    replicas,
    synchronous: 'FULL',
    // npm start's default: each node one process (--workers 0).
    workers: null,
    routerNodeArgs: prof,
    shardNodeArgs: prof
  })
  try {
    if (replicas > 0) await waitInSync(cluster.routerUrl, ctx.signal)
  } catch (err) {
    await cluster.stop()
    throw err
  }
  const store = direct ? new DirectStore(directClient(cluster.routerUrl, ctx.opts.ycsbConnections)) : new ShardkvStore(cluster.routerUrl, ctx.opts.ycsbConnections)
  return {
    store,
    target: `${direct ? 'direct client' : 'router'} → ${groups} × ${replicas > 0 ? `(primary + ${replicas} replica)` : 'primary'}`,
    pids: cluster.processes.map((p) => p.pid),
    stop: async () => {
      await store.close().catch(() => undefined)
      await cluster.stop()
    }
  }
}

async function etcd (suite: Suite): Promise<System | string> {
  const { ctx } = suite
  const bin = ensureBinary('etcd', 'etcd-server', resolve(ctx.tmp, 'apt-get.log'))
  if ('skip' in bin) return bin.skip
  const dir = ctx.scenarioDir('ycsb-etcd')
  const peer = await startEtcdCluster(ctx, bin.path, dir, 3)
  const store = new EtcdStore(peer.endpoints, ctx.opts.ycsbConnections)
  return {
    store,
    target: '3-member etcd, JSON gateway',
    pids: peer.daemons.map((d) => d.pid),
    stop: async () => {
      await store.close().catch(() => undefined)
      await ctx.stop({ launched: [], others: peer.daemons })
    }
  }
}

async function redis (suite: Suite): Promise<System | string> {
  const { ctx } = suite
  const bin = ensureBinary('redis-server', 'redis-server', resolve(ctx.tmp, 'apt-get.log'))
  if ('skip' in bin) return bin.skip
  const peer = await startRedis(ctx, bin.path, ctx.scenarioDir('ycsb-redis'))
  let store: RedisStore
  try {
    store = await RedisStore.open(peer.host, peer.port, ctx.opts.ycsbConnections)
    const fsync = await store.appendfsync()
    if (fsync !== 'always') throw new Error(`redis-server runs with appendfsync ${fsync}, not always`)
  } catch (err) {
    await ctx.stop({ launched: [], others: [peer.daemon] })
    throw err
  }
  return {
    store,
    target: 'redis, appendfsync always',
    pids: [peer.daemon.pid],
    stop: async () => {
      await store.close()
      await ctx.stop({ launched: [], others: [peer.daemon] })
    }
  }
}

const STARTERS: Record<YcsbSystem, (suite: Suite) => Promise<System | string>> = {
  shardkv: (s) => shardkv(s, 1),
  direct: (s) => shardkv(s, 1, true),
  unreplicated: (s) => shardkv(s, 0),
  etcd,
  redis
}

/**
 * The measured insert writes each of its keys once, so it cannot warm up on them: before
 * it, every system takes inserts of keys outside the records' range (`warm<i>`, never read
 * by the workloads) for up to --ycsb-warmup seconds, until three 2-second slices agree in
 * rate and in server CPU per insert. A cluster of Node processes started a moment before
 * spends seconds compiling its hot paths: its CPU per write kept falling for ~30 s after
 * its rate looked steady (1,446 µs after 3 s of writes, 1,009 after 10, 918 after 35, on
 * 5 December), so a rate-only warm-up measured V8's compiler as much as the writes.
 */
async function warmInsert (system: System, value: Buffer, connections: number, ctx: Suite['ctx']): Promise<void> {
  if (ctx.opts.ycsbWarmup <= 0) return
  let next = 0
  const op = async (): Promise<number> => { await system.store.insert(`warm${next++}`, value); return 1 }
  const warm = await warmUp({ connections, op, signal: ctx.signal }, { maxMs: ctx.opts.ycsbWarmup * 1000, sliceMs: 2000, cpuSeconds: () => cpuSeconds(system.pids) })
  const cpu = warm.cpuSlices.map((us) => us.toFixed(0)).join(', ')
  console.log(`    (insert warm-up: ${next} inserts of other keys in ${warm.seconds} s${warm.steady ? '' : ', not steady'}; server CPU µs per insert by 2-s slice: ${cpu})`)
}

export async function ycsb (suite: Suite): Promise<void> {
  const { ctx } = suite
  const { records, ycsbConnections: connections, ycsbDuration: durationS, ycsbSystems } = ctx.opts
  const value = Buffer.alloc(VALUE_BYTES, 'v')
  // The insert phase warmed every path already; a short warm-up lets V8 settle on the workload's mix.
  const warmupS = Math.min(ctx.opts.warmup, 2)
  console.log(`  ${records} records of ${VALUE_BYTES} bytes, ${connections} loops, ${durationS} s per workload (+≤${warmupS} s warm-up), scrambled zipfian 0.99`)
  for (const name of ycsbSystems) {
    ctx.signal.throwIfAborted()
    let system: System | string
    try {
      system = await STARTERS[name](suite)
    } catch (err) {
      ctx.signal.throwIfAborted()
      suite.skip('ycsb', name, `could not start: ${(err as Error).message.split('\n')[0] ?? ''}`, true)
      continue
    }
    if (typeof system === 'string') {
      suite.skip('ycsb', name, system)
      continue
    }
    const s = system
    try {
      const mo = { connections, durationS, warmupS, serverPids: s.pids }
      await warmInsert(s, value, connections, ctx)
      await suite.measureCount('ycsb', `${name} insert`, s.target, records, (i) => s.store.insert(ycsbKey(i), value), mo)
      for (const [i, w] of WORKLOADS.entries()) {
        const run = workloadOperation(s.store, w, records, value, SEED + i)
        const m = await suite.measure('ycsb', `${name} ${w.id}`, s.target, run.op, mo)
        if (m !== undefined && run.conflicts() > 0) console.log(`    (${w.id}: ${run.conflicts()} read-modify-writes lost to a concurrent writer, counted as done)`)
      }
    } finally {
      await s.stop().catch((err: unknown) => console.error(`  stopping ${name}: ${(err as Error).message}`))
    }
  }
}


