import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client } from 'undici'
import pino from 'pino'
import { DashboardHub, type HubOptions } from '../../coordinator/dashboard/hub'
import { OperationLog } from '../../coordinator/dashboard/operations'
import type { ClusterView } from '../../src/protocol/cluster-view'

// The dashboard's stream hub over a real HTTP server (no cluster): snapshots on change and
// on a heartbeat, bye and a cut after the lifetime, bye on close, and nothing run unwatched.

interface Received { events: Array<{ event: string, data: string }>, ended: Promise<void>, close: () => Promise<void> }

function serve (t: tap.Test, hub: DashboardHub): Promise<string> {
  const server: Server = createServer((_req, res) => {
    const out = hub.open({ name: null, admin: true }, res)
    res.setHeader('content-type', 'text/event-stream')
    out.pipe(res)
  })
  t.teardown(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)))
}

async function listen (origin: string): Promise<Received> {
  const client = new Client(origin)
  const res = await client.request({ path: '/', method: 'GET' })
  const events: Received['events'] = []
  let buffer = ''
  res.body.setEncoding('utf8')
  const ended = new Promise<void>((resolve) => {
    res.body.on('data', (chunk: string) => {
      buffer += chunk
      for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
        const lines = buffer.slice(0, i).split('\n')
        buffer = buffer.slice(i + 2)
        events.push({ event: lines[0]?.slice(7) ?? '', data: lines[1]?.slice(6) ?? '' })
      }
    }).on('end', resolve).on('error', () => resolve()).on('close', resolve)
  })
  return { events, ended, close: async () => { await client.destroy() } }
}

function hubWith (view: () => ClusterView, options: Partial<HubOptions> = {}): DashboardHub {
  return new DashboardHub({
    view,
    operations: new OperationLog(),
    log: pino({ level: 'silent' }),
    sampleTraffic: async () => ({ router: null, groups: {} }),
    checkMs: 20,
    heartbeatMs: 300,
    sampleMs: 100,
    ...options
  })
}

const emptyView = (epoch: number): ClusterView => ({ epoch, ring: { vnodesPerWeight: 1, algorithm: 'md5' }, groups: [] })
const until = async (what: string, check: () => boolean, ms = 3000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

t.test('hello, a snapshot at once, then one on each change and on the heartbeat', async (t) => {
  let epoch = 1
  const hub = hubWith(() => emptyView(epoch))
  const r = await listen(await serve(t, hub))
  t.teardown(r.close)
  await until('hello and a snapshot', () => r.events.length >= 2)
  t.same(r.events.map((e) => e.event).slice(0, 2), ['hello', 'snapshot'])
  const snapshots = (): number => r.events.filter((e) => e.event === 'snapshot').length
  const before = snapshots()
  epoch = 2
  await until('the change sent', () => r.events.some((e) => e.event === 'snapshot' && JSON.parse(e.data).cluster.epoch === 2), 200)
  const changed = snapshots()
  t.ok(changed > before)
  await until('a heartbeat without a change', () => snapshots() > changed, 1000)
})

t.test('after its lifetime a stream is sent bye, and cut when the page keeps it', async (t) => {
  const hub = hubWith(() => emptyView(1), { lifetimeMs: 150, byeGraceMs: 100 })
  const r = await listen(await serve(t, hub))
  t.teardown(r.close)
  await r.ended
  t.same(r.events.filter((e) => e.event === 'bye').map((e) => JSON.parse(e.data)), [{ reason: 'lifetime' }])
  await until('forgotten', () => hub.size === 0)
})

t.test('nothing runs while no stream is open', async (t) => {
  let views = 0
  const hub = hubWith(() => { views++; return emptyView(1) })
  const r = await listen(await serve(t, hub))
  await until('checks running', () => views > 3)
  await r.close()
  await until('forgotten', () => hub.size === 0)
  await new Promise((resolve) => setTimeout(resolve, 60))
  const seen = views
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal(views, seen, 'no checks once the last stream closed')
})

t.test('close says bye to every stream and ends it', async (t) => {
  const hub = hubWith(() => emptyView(1))
  const origin = await serve(t, hub)
  const a = await listen(origin)
  const b = await listen(origin)
  t.teardown(async () => { await a.close(); await b.close() })
  await until('both open', () => hub.size === 2)
  hub.close()
  await Promise.all([a.ended, b.ended])
  for (const r of [a, b]) t.same(JSON.parse(r.events[r.events.length - 1]?.data ?? '{}'), { reason: 'closing' })
  await until('forgotten', () => hub.size === 0)
  t.throws(() => hub.open({ name: null, admin: true }, {} as never), { code: 'unavailable' }, 'a closed hub opens nothing')
})
