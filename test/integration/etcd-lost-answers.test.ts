import t from 'tap'
import type tap from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { etcdAvailable, startEtcd } from '../harness/etcd'
import { sleep } from '../harness/cluster'
import { EtcdGateway } from '../../src/registry/etcd/gateway'
import { EtcdLeadership } from '../../src/registry/etcd/leadership'
import { EtcdRegistry, clusterKeys } from '../../src/registry/etcd/etcd-registry'
import { initialMap } from '../../src/membership/map'

/**
 * Registry writes whose answers are lost on the way back, through a proxy in front of a
 * real etcd: a write that applied is recognised as applied (not written twice, not
 * reported failed), and a write held back in the network until after the writer gave up
 * on it can no longer apply when it finally arrives (the fence), so the map never goes
 * back to an older epoch.
 */

type Mode = { kind: 'pass' } | { kind: 'drop-answer' } | { kind: 'delay', ms: number }

/** An HTTP proxy to etcd that applies `next()` to each /v3/kv/txn call. */
async function lossyProxy (t: tap.Test, target: string, next: () => Mode): Promise<string> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const mode: Mode = req.url === '/v3/kv/txn' ? next() : { kind: 'pass' }
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
}
