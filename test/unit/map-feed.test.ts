import t from 'tap'
import pino from 'pino'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'
import { createApiServer } from '../../src/http/server'
import { MapFeed } from '../../coordinator/map-feed'
import type { ClusterMap } from '../../src/membership/map'
import { INTERNAL_COORDINATOR } from '../../src/protocol/wire'

/**
 * A coordinator's map feed, as a router follows it: a long poll that a closing coordinator
 * ends (204). Its connection must close with that answer, or the coordinator's close waits
 * for it until the listener's idle timeout (a coordinator stopped with SIGTERM while a
 * router followed its map took 63 s to exit).
 */

t.test('a follow ended because the coordinator closes closes its connection, and the close does not wait for it', async (t) => {
  const app = createApiServer({ log: pino({ level: 'silent' }), maxValueBytes: 16, limits: { headersTimeoutMs: 5000, requestTimeoutMs: 120_000, idleTimeoutMs: 60_000, maxConnections: 10 } })
  const feed = new MapFeed(() => ({ epoch: 7 }) as unknown as ClusterMap, () => true)
  void app.register(async (scope) => { feed.register(scope) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const agent = new Agent({ keepAliveTimeout: 60_000 })
  t.teardown(async () => { await agent.close() })
  const { port } = app.server.address() as AddressInfo
  const follow = request(`http://127.0.0.1:${port}${INTERNAL_COORDINATOR.mapFollow}?after=7&wait=30000`, { dispatcher: agent })
  await new Promise((resolve) => setTimeout(resolve, 200))

  const started = Date.now()
  const closed = app.close()
  // The follow is answered once the server has stopped listening (what the coordinator's
  // stop does: it ends the feed as its listeners close).
  while (app.server.listening) await new Promise((resolve) => setImmediate(resolve))
  feed.close()
  const res = await follow
  await res.body.dump()
  t.equal(res.statusCode, 204, 'the follow ends with 204')
  t.equal(res.headers.connection, 'close', 'and closes its connection')
  await closed
  const tookMs = Date.now() - started
  t.ok(tookMs < 10_000, `the listener closed ${tookMs} ms after its close began (its idle timeout is 60 s)`)
})
