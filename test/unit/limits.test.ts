import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { internalBodyLimit, INTERNAL_BODY_CEILING, MAX_GROUPS, MAX_RING_VNODES } from '../../src/protocol/limits'
import { checkMapBounds, initialMap, validateMap, MapError, type ClusterMap } from '../../src/membership/map'
import { planAdd } from '../../src/membership/rebalance'
import { ShardKvError } from '../../src/protocol/errors'
import { jsonRequest } from '../../src/client/http'

const MIB = 1024 * 1024

function mapOf (groups: number, vnodesPerWeight = 1, weight = 1): ClusterMap {
  return {
    epoch: 1,
    ring: { vnodesPerWeight, algorithm: 'md5' },
    groups: Array.from({ length: groups }, (_, i) => ({ id: `g${i}`, weight, state: 'active' as const, nodes: [{ url: `http://127.0.0.1:${10000 + i}`, role: 'primary' as const }] }))
  }
}

t.test('internal bodies: at least 64 MiB, 4 values beyond, never past the ceiling', async (t) => {
  t.equal(internalBodyLimit(MIB), 64 * MIB, 'the default value size keeps the 64 MiB floor')
  t.equal(internalBodyLimit(32 * MIB), 128 * MIB, 'large values: four of them')
  t.equal(internalBodyLimit(10_000 * MIB), INTERNAL_BODY_CEILING, 'bounded whatever --max-value-bytes says')
  t.equal(INTERNAL_BODY_CEILING, 512 * MIB)
})

t.test('a map has at most MAX_GROUPS groups', async (t) => {
  t.doesNotThrow(() => validateMap(mapOf(MAX_GROUPS)), 'MAX_GROUPS groups are valid')
  t.throws(() => validateMap(mapOf(MAX_GROUPS + 1)), MapError, 'one more is refused')
  t.throws(() => initialMap(mapOf(MAX_GROUPS + 1).groups.map((g) => ({ id: g.id, url: g.nodes[0]?.url ?? '', weight: 1 })), { vnodesPerWeight: 1, algorithm: 'md5' }), MapError, 'initialMap refuses it too')
})

t.test('a ring has at most MAX_RING_VNODES virtual nodes', async (t) => {
  t.doesNotThrow(() => validateMap(mapOf(100, MAX_RING_VNODES / 100)), 'exactly at the bound')
  const err = t.throws(() => validateMap(mapOf(100, MAX_RING_VNODES / 100 + 1)), MapError, 'past it')
  t.match((err as Error).message, /virtual nodes/)
  t.doesNotThrow(() => validateMap(mapOf(1, 2048, 400)), 'one heavy group at the default vnodes is fine')
  t.throws(() => checkMapBounds({ ...mapOf(1, 2048), handover: { previous: Array.from({ length: 600 }, (_, i) => ({ id: `p${i}`, weight: 1 })) } }), MapError, 'the handover ring is bounded too')
  const e = new MapError('x')
  t.ok(e instanceof ShardKvError && e.status === 400 && e.code === 'invalid_request', 'a MapError is a 400 invalid_request')
})

t.test('planAdd refuses a group that would put the map past its bounds', async (t) => {
  const full = mapOf(MAX_GROUPS)
  const err = t.throws(() => planAdd(full, { id: 'extra', url: 'http://127.0.0.1:9', weight: 1 }), MapError)
  t.match((err as Error).message, /at most 1024 groups/)
})

async function serve (handler: Parameters<typeof createServer>[1]): Promise<{ url: string, server: Server }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

t.test('an upstream answer past its cap is a 502 upstream_error', async (t) => {
  const big = JSON.stringify({ pad: 'x'.repeat(4096) })
  const { url, server } = await serve((req, res) => {
    if (req.url === '/declared') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) })
      res.end(big)
      return
    }
    // Chunked, no Content-Length: the cap is enforced while reading.
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write(big.slice(0, 2000))
    res.end(big.slice(2000))
  })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  for (const path of ['/declared', '/chunked']) {
    const err = await jsonRequest(url + path, { maxBytes: 1024 }).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof ShardKvError, `${path}: refused with a ShardKvError`)
    t.equal((err as ShardKvError).code, 'upstream_error', `${path}: upstream_error`)
    t.equal((err as ShardKvError).status, 502)
  }
  const ok = await jsonRequest<{ pad: string }>(url + '/chunked', { maxBytes: 8192 })
  t.equal(ok.body.pad.length, 4096, 'within the cap the answer is read whole')
})
