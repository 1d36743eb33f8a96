import t from 'tap'
import { CoalescingQueue, type PendingOp } from '../../src/membership/coalescing'
import { RoutingTable } from '../../src/membership/routing-table'
import { initialMap, type ClusterMap } from '../../src/membership/map'

const RING = { vnodesPerWeight: 256, algorithm: 'md5' as const }
const specs = [1, 2, 3].map((i) => ({ id: `g${i}`, url: `http://127.0.0.1:700${i}`, weight: 1 }))
const settled = initialMap(specs, RING)

interface Calls {
  alone: string[]
  together: Array<{ url: string, keys: string[] }>
}

/** A queue whose batches answer `answer(key)` (undefined: not answered) and whose lone reads answer `alone:<key>`. */
function queue (opts: { maxKeys: number, table: RoutingTable | undefined, answer?: (key: string) => string | undefined, fail?: boolean }): { q: CoalescingQueue<string, string>, calls: Calls } {
  const calls: Calls = { alone: [], together: [] }
  const q = new CoalescingQueue<string, string>({
    maxKeys: opts.maxKeys,
    table: () => opts.table,
    alone: (read: PendingOp<string, string>) => { calls.alone.push(read.key); read.resolve(`alone:${read.req}`) },
    together: async (url, _table, reads) => {
      calls.together.push({ url, keys: reads.map((r) => r.key) })
      if (opts.fail === true) throw new Error('connection refused')
      return reads.map((r) => (opts.answer ?? ((k: string) => `batch:${k}`))(r.key))
    }
  })
  return { q, calls }
}

const keys = Array.from({ length: 60 }, (_, i) => `k${i}`)

t.test('reads of one turn go to each primary as batches of at most maxKeys; each gets its own answer', async (t) => {
  const table = new RoutingTable(settled)
  const { q, calls } = queue({ maxKeys: 8, table })
  const answers = await Promise.all(keys.map(async (k) => await q.enqueue(k, k)))
  t.same(answers, keys.map((k) => `batch:${k}`), 'every read got the answer for its own key, in order')
  t.same(calls.alone, [], 'none went alone')
  for (const b of calls.together) {
    t.ok(b.keys.length >= 2 && b.keys.length <= 8, `${b.url}: ${b.keys.length} keys`)
    t.ok(b.keys.every((k) => table.ownerOf(k) === b.url), `${b.url}: only keys its group owns`)
  }
  t.equal(calls.together.reduce((n, b) => n + b.keys.length, 0), keys.length, 'every read sent once')
})

t.test('a lone read, and reads before any map, go alone', async (t) => {
  const { q, calls } = queue({ maxKeys: 8, table: new RoutingTable(settled) })
  t.equal(await q.enqueue('solo', 'solo'), 'alone:solo')
  t.same(calls.together, [], 'no batch for one read')
  const none = queue({ maxKeys: 8, table: undefined })
  t.same(await Promise.all(['a', 'b'].map(async (k) => await none.q.enqueue(k, k))), ['alone:a', 'alone:b'], 'no table: alone')
})

t.test('reads the batch does not answer, or all of a batch that fails, go alone', async (t) => {
  const table = new RoutingTable(settled)
  const partial = queue({ maxKeys: 64, table, answer: (k) => Number(k.slice(1)) % 2 === 0 ? `batch:${k}` : undefined })
  const got = await Promise.all(keys.map(async (k) => await partial.q.enqueue(k, k)))
  t.same(got, keys.map((k, i) => i % 2 === 0 ? `batch:${k}` : `alone:${k}`), 'unanswered reads went alone')
  const failing = queue({ maxKeys: 64, table, fail: true })
  t.same(await Promise.all(keys.map(async (k) => await failing.q.enqueue(k, k))), keys.map((k) => `alone:${k}`), 'a failed batch sends every read alone')
})

t.test('keys an unsettled rebalance moves go alone; the rest are batched by their owner', async (t) => {
  const g4 = { id: 'g4', weight: 1, state: 'active' as const, nodes: [{ url: 'http://127.0.0.1:7004', role: 'primary' as const }] }
  const moving: ClusterMap = { ...settled, epoch: settled.epoch + 1, groups: [...settled.groups, g4], handover: { previous: specs.map((s) => ({ id: s.id, weight: 1 })) } }
  const table = new RoutingTable(moving)
  const { q, calls } = queue({ maxKeys: 64, table })
  await Promise.all(keys.map(async (k) => await q.enqueue(k, k)))
  const movingKeys = keys.filter((k) => table.handoverSourceOf(k) !== undefined)
  t.ok(movingKeys.length > 0, `${movingKeys.length} of the keys are moving`)
  t.same([...calls.alone].sort(), [...movingKeys].sort(), 'exactly the moving keys went alone')
})

t.test('requests of different lanes never share a batch', async (t) => {
  const table = new RoutingTable(settled)
  const { q, calls } = queue({ maxKeys: 64, table })
  const lanes = ['alice', 'bob', '']
  const answers = await Promise.all(keys.map(async (k, i) => await q.enqueue(k, `${lanes[i % 3] ?? ''}/${k}`, lanes[i % 3])))
  t.same(answers, keys.map((k) => `batch:${k}`), 'every request answered from a batch')
  const laneOf = new Map(keys.map((k, i) => [k, lanes[i % 3]]))
  for (const b of calls.together) {
    t.equal(new Set(b.keys.map((k) => laneOf.get(k))).size, 1, `${b.url}: one lane (${b.keys.length} keys)`)
  }
  t.ok(calls.together.length >= 3 * 3 - 1, `each lane got its own batches (${calls.together.length})`)
})
