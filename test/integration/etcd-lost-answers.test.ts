import t from 'tap'
import type tap from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { sleep, waitFor } from '../harness/cluster'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { EtcdLeadership } from '../../src/registry/etcd/leadership'
import { EtcdRegistry, clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { RegistryConflict } from '../../src/registry/registry'
import { initialMap } from '../../src/membership/map'

/**
 * Registry writes whose answers are lost on the way back, through a proxy in front of a
 * real etcd: a write that applied is recognised as applied (not written twice, not
 * reported failed), and a write held back in the network until after the writer gave up
 * on it can no longer apply when it finally arrives (the fence), so the map never goes
 * back to an older epoch. A coordinator whose term ends gives its calls in flight up at
 * once (etcd without a quorum answers nothing), so that the term stops promptly.
 */

type Mode = { kind: 'pass' } | { kind: 'drop-answer' } | { kind: 'delay', ms: number } | { kind: 'hold' }

/** An HTTP proxy to etcd that applies `next()` to each /v3/kv/txn call; `seen` counts the calls it was sent. */
async function lossyProxy (t: tap.Test, target: string, next: () => Mode, seen: { calls: number } = { calls: 0 }): Promise<string> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    seen.calls++
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const mode: Mode = req.url === '/v3/kv/txn' ? next() : { kind: 'pass' }
      if (mode.kind === 'hold') return // never forwarded, never answered: etcd without a quorum, as a client sees it
      const forward = async (): Promise<void> => {
        const answer = await fetch(`${target}${req.url ?? '/'}`, { method: req.method, body: Buffer.concat(chunks), headers: { 'content-type': 'application/json' } })
        const body = Buffer.from(await answer.arrayBuffer())
        if (mode.kind === 'drop-answer') {
          req.socket.destroy() // applied in etcd; the client never hears
          return
        }
        if (!res.destroyed) res.writeHead(answer.status, { 'content-type': 'application/json' }).end(body)
      }
      const run = mode.kind === 'delay' ? sleep(mode.ms).then(forward) : forward()
      run.catch(() => { req.socket.destroy() })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('lost answers: an applied write is recognised; a write held back is fenced off', async (t) => {
    const etcd = await startEtcd(t, { members: 1, name: 'lost' })
    const modes: Mode[] = []
    const proxy = await lossyProxy(t, etcd.endpoints[0] as string, () => modes.shift() ?? { kind: 'pass' })
    const gw = new EtcdGateway({ endpoints: [proxy], timeoutMs: 700 })
    const direct = new EtcdGateway({ endpoints: etcd.endpoints })
    t.teardown(async () => { await gw.close(); await direct.close() })
    const keys = clusterKeys('lost')
    const lead = new EtcdLeadership(direct, { key: keys.leader, candidate: 'http://a', ttlSeconds: 10 })
    t.teardown(async () => { await lead.resign() })
    await lead.campaign()
    const reg = new EtcdRegistry({ gateway: gw, cluster: 'lost', guard: () => lead.guard() })
    await reg.load()
    const m1 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
    await reg.publish(m1)

    // 1. The answer of an applied write is dropped: the fence fails, the read-back finds it.
    const m2 = { ...m1, epoch: m1.epoch + 1 }
    modes.push({ kind: 'drop-answer' })
    await reg.publish(m2)
    const after2 = await new EtcdRegistry({ gateway: direct, cluster: 'lost' }).load()
    t.equal(after2.map?.epoch, m2.epoch, 'the write whose answer was lost is recognised as applied')

    // 2. A write is held in the network past the client's timeout: the fence goes first,
    //    the client sends the write again, and the held copy then arrives and is refused.
    const m3 = { ...m2, epoch: m2.epoch + 1 }
    modes.push({ kind: 'delay', ms: 1500 })
    await reg.publish(m3)
    const m4 = { ...m3, epoch: m3.epoch + 1 }
    await reg.publish(m4)
    await sleep(2000) // the held copy of m3's write reaches etcd now
    const final = await new EtcdRegistry({ gateway: direct, cluster: 'lost' }).load()
    t.equal(final.map?.epoch, m4.epoch, 'the held-back write of an older epoch did not overwrite the newer map')
    const mapKey = (await direct.range(keys.map)).kvs[0]
    t.equal(mapKey?.version, '4', 'the map key was written exactly four times (m1, m2, m3, m4): no write applied twice')
  })

  t.test('a term that ends gives up its registry calls in flight at once, not after the gateway\'s timeout', async (t) => {
    const etcd = await startEtcd(t, { members: 1, name: 'term-end' })
    const modes: Mode[] = []
    const seen = { calls: 0 }
    const proxy = await lossyProxy(t, etcd.endpoints[0] as string, () => modes.shift() ?? { kind: 'pass' }, seen)
    // A timeout far past the test's budget: only the term's signal can end the held write.
    const gw = new EtcdGateway({ endpoints: [proxy], timeoutMs: 600_000 })
    const direct = new EtcdGateway({ endpoints: etcd.endpoints })
    t.teardown(async () => { await gw.agent.destroy(); await direct.close() })
    const lead = new EtcdLeadership(direct, { key: clusterKeys('term-end').leader, candidate: 'http://a', ttlSeconds: 10 })
    t.teardown(async () => { await lead.resign() })
    await lead.campaign()
    const term = new AbortController()
    const reg = new EtcdRegistry({ gateway: gw, cluster: 'term-end', guard: () => lead.guard(), termSignal: () => term.signal })
    await reg.load()
    const m1 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])

    modes.push({ kind: 'hold' })
    const before = seen.calls
    const write = reg.publish(m1).then(() => 'applied', (err: Error) => err)
    await waitFor(async () => seen.calls > before, 30_000, 'the write reached the proxy')
    term.abort()
    // Bounded so that a write the abort does not end fails the test rather than hang it.
    let bound: NodeJS.Timeout | undefined
    const outcome = await Promise.race([write, new Promise<string>((resolve) => { bound = setTimeout(() => resolve('still waiting a minute after the term ended'), 60_000) })])
    clearTimeout(bound)
    t.ok(outcome instanceof RegistryConflict, `the held write fails as the term ends: ${String(outcome)}`)
    t.match(String((outcome as Error).message), /outcome is unknown.*given up by its caller/, 'as outcome unknown (it was sent), given up rather than timed out')
    const sent = seen.calls
    await t.rejects(reg.load(), /given up by its caller/, 'a call of the ended term afterwards fails too')
    t.equal(seen.calls, sent, 'without being sent')
    t.equal((await new EtcdRegistry({ gateway: direct, cluster: 'term-end' }).load()).map, undefined, 'and nothing was written')
  })
}
