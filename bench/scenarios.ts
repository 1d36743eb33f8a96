import { resolve } from 'node:path'
import { BATCH_DEFAULTS } from '../src/protocol/batch'
import type { KvClient } from '../src/client'
import { clientGet, clientMixed, clientPut, directClient } from './client-ops'
import { startBenchCluster, HOST, type BenchCluster, type BenchClusterOptions } from './cluster'
import { HttpTarget, type TargetCredentials } from './http-ops'
import { authVariants } from './auth'
import { benchKey } from './preload'
import { ensureNginx, startNginx, type NginxProcess } from './nginx'
import type { ScenarioId } from './options'
import type { Suite } from './suite'
import { ycsb } from './ycsb'
import { footprint } from './footprint'

/**
 * The scenarios of `npm run bench`. Each starts its own cluster, measures, and stops
 * everything it started (also when a measurement throws or the run is interrupted).
 */

type Closer = () => Promise<unknown>

/** Runs `body` with a fresh cluster; whatever it registers with `closeLater` closes first. */
async function withCluster (
  suite: Suite,
  opts: BenchClusterOptions & { preload: boolean },
  body: (cluster: BenchCluster, closeLater: (c: Closer) => void) => Promise<void>
): Promise<void> {
  const { ctx } = suite
  ctx.signal.throwIfAborted()
  const cluster = await startBenchCluster(ctx, opts)
  const closers: Closer[] = []
  try {
    if (opts.preload) {
      const t0 = Date.now()
      await cluster.load(ctx.opts.keys, value(suite))
      console.log(`  (${opts.name}: ${opts.groups} group${opts.groups === 1 ? '' : 's'} up, ${ctx.opts.keys} keys preloaded in ${((Date.now() - t0) / 1000).toFixed(1)} s)`)
    } else {
      cluster.keys.push(...Array.from({ length: ctx.opts.keys }, (_, i) => benchKey(i)))
    }
    await body(cluster, (c) => closers.push(c))
  } catch (err) {
    // What the processes said last usually explains it; they are gone after the finally.
    if (!ctx.signal.aborted) {
      for (const p of cluster.processes) console.error(`--- ${p.name} (last lines) ---\n${p.output().split('\n').slice(-8).join('\n')}`)
    }
    throw err
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined)
    await cluster.stop()
  }
}

function value (suite: Suite): Buffer {
  return Buffer.alloc(suite.ctx.opts.valueBytes, 'v')
}

function groupsLabel (n: number): string {
  return `${n} group${n === 1 ? '' : 's'}`
}

function http (url: string, suite: Suite, closeLater: (c: Closer) => void, credentials?: TargetCredentials): HttpTarget {
  const t = new HttpTarget(url, suite.ctx.opts.connections, credentials)
  closeLater(() => t.close())
  return t
}

function client (suite: Suite, routerUrl: string, closeLater: (c: Closer) => void, readCoalesceMaxKeys?: number): KvClient {
  const c = directClient(routerUrl, suite.ctx.opts.connections, readCoalesceMaxKeys)
  closeLater(() => c.close())
  return c
}

/** 1: GET, PUT and the mix through the router. */
async function routed (suite: Suite): Promise<void> {
  const { groups, mix } = suite.ctx.opts
  await withCluster(suite, { name: 'routed', groups, preload: true }, async (cluster, closeLater) => {
    const router = http(cluster.routerUrl, suite, closeLater)
    const target = `router → ${groupsLabel(groups)}`
    await suite.measure('routed', 'GET', target, router.get(cluster.keys))
    await suite.measure('routed', 'PUT', target, router.put(cluster.keys, value(suite)))
    await suite.measure('routed', `mix ${Math.round(mix * 100)}% GET`, target, router.mixed(cluster.keys, value(suite), mix))
  })
}

/** 2: the same through the direct client (client-side ring, straight to the owners). */
async function direct (suite: Suite): Promise<void> {
  const { groups, mix } = suite.ctx.opts
  await withCluster(suite, { name: 'direct', groups, preload: true }, async (cluster, closeLater) => {
    const c = client(suite, cluster.routerUrl, closeLater)
    const target = `direct client → ${groupsLabel(groups)}`
    await suite.measure('direct', 'GET', target, clientGet(c, cluster.keys))
    await suite.measure('direct', 'PUT', target, clientPut(c, cluster.keys, value(suite)))
    await suite.measure('direct', `mix ${Math.round(mix * 100)}% GET`, target, clientMixed(c, cluster.keys, value(suite), mix))
  })
}

/** 3: straight to a single shard node, no hop at all: the floor. */
async function node (suite: Suite): Promise<void> {
  await withCluster(suite, { name: 'node', groups: 1, preload: true }, async (cluster, closeLater) => {
    const g1 = http(cluster.nodes[0]?.url ?? '', suite, closeLater)
    await suite.measure('node', 'GET', 'one shard node', g1.get(cluster.keys))
    await suite.measure('node', 'PUT', 'one shard node', g1.put(cluster.keys, value(suite)))
  })
}

/** Node flags that profile a scenario's router when --cpu-prof is given. */
function profiled (suite: Suite): string[] | undefined {
  const dir = suite.ctx.opts.cpuProf
  return dir === undefined ? undefined : ['--cpu-prof', `--cpu-prof-dir=${resolve(dir)}`]
}

/** 4: batches through the router against single keys, same cluster, back to back. */
async function batch (suite: Suite): Promise<void> {
  const { groups, batchSize, valueBytes } = suite.ctx.opts
  await withCluster(suite, { name: 'batch', groups, preload: true, routerNodeArgs: profiled(suite) }, async (cluster, closeLater) => {
    const router = http(cluster.routerUrl, suite, closeLater)
    const target = `router → ${groupsLabel(groups)}`
    const batchTarget = `${target}, ${batchSize}/batch`
    // The cluster's CPU per request (a batch's is for all its keys): on a shared machine the
    // keys/s ratio moves with the others' load between phases; CPU per key says where it went.
    const mo = { serverPids: cluster.processes.map((p) => p.pid) }
    await suite.measure('batch', 'GET', target, router.get(cluster.keys), mo)
    await suite.measure('batch', 'batch GET', batchTarget, router.batch('get', cluster.keys, batchSize), mo)
    await suite.measure('batch', 'PUT', target, router.put(cluster.keys, value(suite)), mo)
    // base64 plus JSON framing: keep well under the servers' default --max-batch-bytes.
    if (batchSize * (Math.ceil(valueBytes / 3) * 4 + 100) > BATCH_DEFAULTS.maxBytes * 0.9) {
      suite.skip('batch', 'batch PUT', `${batchSize} values of ${valueBytes} bytes exceed the ${BATCH_DEFAULTS.maxBytes}-byte batch limit`)
      return
    }
    await suite.measure('batch', 'batch PUT', batchTarget, router.batch('put', cluster.keys, batchSize, value(suite)), mo)
  })
}

/** 5: routed GET and PUT with 1 to 4 groups, one cluster each. */
async function scaling (suite: Suite): Promise<void> {
  for (let groups = 1; groups <= 4; groups++) {
    await withCluster(suite, { name: `scaling-${groups}`, groups, preload: true }, async (cluster, closeLater) => {
      const router = http(cluster.routerUrl, suite, closeLater)
      const target = `router → ${groupsLabel(groups)}`
      await suite.measure('scaling', `GET ${groupsLabel(groups)}`, target, router.get(cluster.keys))
      await suite.measure('scaling', `PUT ${groupsLabel(groups)}`, target, router.put(cluster.keys, value(suite)))
    })
  }
}

/** 6: one shard node behind nginx, the router and the direct client, back to back. */
async function peer (suite: Suite): Promise<void> {
  const { ctx } = suite
  const nginx = ensureNginx(resolve(ctx.tmp, 'apt-get.log'))
  if ('skip' in nginx) suite.skip('peer', 'nginx GET', nginx.skip)
  await withCluster(suite, { name: 'peer', groups: 1, preload: true, routerNodeArgs: profiled(suite) }, async (cluster, closeLater) => {
    const nodeUrl = cluster.nodes[0]?.url ?? ''
    let proxy: NginxProcess | undefined
    if ('path' in nginx) {
      const p = proxy = await startNginx({ binary: nginx.path, prefix: resolve(cluster.dir, 'nginx'), host: HOST, upstreams: [nodeUrl] })
      ctx.trackOther(p)
      closeLater(() => ctx.stop({ launched: [], others: [p] }))
    }
    const keys = cluster.keys
    if (proxy !== undefined) await suite.measure('peer', 'nginx GET', 'nginx → one node', http(proxy.url, suite, closeLater).get(keys))
    await suite.measure('peer', 'router GET', 'router → one node', http(cluster.routerUrl, suite, closeLater).get(keys))
    await suite.measure('peer', 'direct GET', 'direct client → one node', clientGet(client(suite, cluster.routerUrl, closeLater), keys))
    await suite.measure('peer', 'node GET', 'one node, no proxy', http(nodeUrl, suite, closeLater).get(keys))
    // Without read coalescing: one upstream request per GET, as nginx does it.
    await suite.measure('peer', 'direct GET 1/req', 'direct client, coalescing off', clientGet(client(suite, cluster.routerUrl, closeLater, 1), keys))
  })
  await withCluster(suite, { name: 'peer-1-per-request', groups: 1, preload: true, routerArgs: ['--read-coalesce-max-keys', '1'] }, async (cluster, closeLater) => {
    await suite.measure('peer', 'router GET 1/req', 'router, coalescing off → one node', http(cluster.routerUrl, suite, closeLater).get(cluster.keys))
  })
}

/**
 * 7: durable PUT with group commit (the default) against one transaction per write; on
 * the group-commit node, back to back, PUTs that carry request ids (what the record of
 * applied ids costs: one more row and two index entries per write, same transaction).
 */
async function groupCommit (suite: Suite): Promise<void> {
  const variants = [
    { name: 'PUT group commit', shardArgs: [] as string[] },
    { name: 'PUT 1 tx/write', shardArgs: ['--group-commit-max-ops', '1'] }
  ]
  for (const v of variants) {
    await withCluster(suite, { name: `gc-${v.shardArgs.length === 0 ? 'on' : 'off'}`, groups: 1, preload: false, synchronous: 'FULL', shardArgs: v.shardArgs }, async (cluster, closeLater) => {
      const g1 = http(cluster.nodes[0]?.url ?? '', suite, closeLater)
      await suite.measure('group-commit', v.name, 'one node, synchronous=FULL', g1.put(cluster.keys, value(suite)))
      if (v.shardArgs.length === 0) {
        await suite.measure('group-commit', 'PUT group commit + request ids', 'one node, synchronous=FULL', g1.put(cluster.keys, value(suite), true))
      }
    })
  }
}

/**
 * 8: routed GET and PUT without client auth, with tokens and the cluster secret (the
 * router authenticates each request, forwards as a peer; nodes check the secret), with
 * an HTTPS client listener, and with both: one cluster each, back to back.
 */
async function auth (suite: Suite): Promise<void> {
  const { groups } = suite.ctx.opts
  for (const v of authVariants(resolve(suite.ctx.tmp, 'auth-credentials'))) {
    const name = `auth-${v.label.trim().replace('+', '-').toLowerCase() || 'plain'}`
    await withCluster(suite, { name, groups, preload: true, shardArgs: v.shardArgs, routerArgs: v.routerArgs, credentials: v.credentials }, async (cluster, closeLater) => {
      const router = http(cluster.routerUrl, suite, closeLater, v.credentials)
      const target = `router → ${groupsLabel(groups)}${v.label === '' ? '' : `, ${v.label.trim()}`}`
      await suite.measure('auth', `${v.label}GET`, target, router.get(cluster.keys))
      await suite.measure('auth', `${v.label}PUT`, target, router.put(cluster.keys, value(suite)))
    })
  }
}

export const SCENARIO_RUNNERS: Record<ScenarioId, (suite: Suite) => Promise<void>> = {
  footprint,
  routed,
  direct,
  node,
  batch,
  scaling,
  peer,
  'group-commit': groupCommit,
  auth,
  ycsb
}
