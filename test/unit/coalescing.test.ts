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

/** A queue limited to `maxInFlight` whose batches and lone requests answer only when the test releases them. */
function gatedQueue (maxInFlight: number | undefined, table: RoutingTable): {
  q: CoalescingQueue<string, string>
  sent: Array<{ url: string, keys: string[], release: (fail?: boolean) => void }>
} {
  const sent: Array<{ url: string, keys: string[], release: (fail?: boolean) => void }> = []
  const q = new CoalescingQueue<string, string>({
    maxKeys: 64,
    maxInFlight,
    table: () => table,
    alone: (op) => {
      sent.push({ url: table.ownerOf(op.key) ?? '', keys: [op.key], release: () => { op.resolve(`alone:${op.key}`) } })
    },
    together: async (url, _table, ops) => await new Promise((resolve, reject) => {
      sent.push({ url, keys: ops.map((o) => o.key), release: (fail) => { if (fail === true) reject(new Error('reset')); else resolve(ops.map((o) => `batch:${o.key}`)) } })
    })
  })
  return { q, sent }
}

const turn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

t.test('maxInFlight: what arrives for a busy primary waits for its request to end, then goes as one batch', async (t) => {
  const table = new RoutingTable(settled)
  const url = table.ownerOf('k0') as string
  const same = keys.filter((k) => table.ownerOf(k) === url).slice(0, 5)
  const other = keys.find((k) => table.ownerOf(k) !== url) as string
  const { q, sent } = gatedQueue(1, table)
  const first = [q.enqueue(same[0] as string, 'a'), q.enqueue(same[1] as string, 'b')]
  await turn()
  t.same(sent.map((s) => s.keys), [[same[0], same[1]]], 'the first turn\'s batch is sent')
  const later = same.slice(2).map(async (k) => await q.enqueue(k, k))
  const elsewhere = q.enqueue(other, other)
  await turn()
  await turn()
  t.same(sent.map((s) => s.keys), [[same[0], same[1]], [other]], 'the busy primary\'s requests are held; another primary\'s are not')
  sent[0]?.release()
  t.same(await Promise.all(first), [`batch:${same[0] as string}`, `batch:${same[1] as string}`])
  await turn()
  t.same(sent[2]?.keys, same.slice(2), 'the held requests went as one batch once the first ended')
  sent[2]?.release()
  sent[1]?.release()
  t.same(await Promise.all(later), same.slice(2).map((k) => `batch:${k}`))
  t.equal(await elsewhere, `alone:${other}`)
})

t.test('maxInFlight: a request sent alone counts; a failed batch releases the primary and its ops go alone', async (t) => {
  const table = new RoutingTable(settled)
  const url = table.ownerOf('k0') as string
  const same = keys.filter((k) => table.ownerOf(k) === url).slice(0, 4)
  const { q, sent } = gatedQueue(1, table)
  const lone = q.enqueue(same[0] as string, 'x')
  await turn()
  t.same(sent.map((s) => s.keys), [[same[0]]], 'a lone request goes alone at once')
  const pair = [q.enqueue(same[1] as string, 'y'), q.enqueue(same[2] as string, 'z')]
  await turn()
  t.equal(sent.length, 1, 'held while the lone request is in flight')
  sent[0]?.release()
  t.equal(await lone, `alone:${same[0] as string}`)
  await turn()
  t.same(sent[1]?.keys, [same[1], same[2]], 'then sent as a batch')
  const third = q.enqueue(same[3] as string, 'w')
  await turn()
  t.equal(sent.length, 2, 'held behind the batch')
  sent[1]?.release(true)
  await turn()
  await turn()
  t.same(sent.slice(2).map((s) => s.keys).sort(), [[same[1]], [same[2]], [same[3]]].sort(), 'the failed batch\'s ops went alone, and the held one was sent')
  for (const s of sent.slice(2)) s.release()
  t.same(await Promise.all([...pair, third]), [same[1], same[2], same[3]].map((k) => `alone:${k as string}`))
})

/**
 * Two requests for one primary in one turn (lane `lanes[0]`), two more in the next (lane
 * `lanes[1]`), before any answer: what was sent. Only for cases where all four are sent.
 */
async function twoTurns (maxInFlight: number | undefined, lanes: [string, string]): Promise<{ sent: string[][], pairs: string[][] }> {
  const table = new RoutingTable(settled)
  const url = table.ownerOf('k0') as string
  const [a, b, c, d] = keys.filter((k) => table.ownerOf(k) === url) as [string, string, string, string]
  const { q, sent } = gatedQueue(maxInFlight, table)
  const first = [q.enqueue(a, a, lanes[0]), q.enqueue(b, b, lanes[0])]
  await turn()
  const second = [q.enqueue(c, c, lanes[1]), q.enqueue(d, d, lanes[1])]
  await turn()
  const keysSent = sent.map((s) => s.keys)
  for (const s of sent) s.release()
  await Promise.all([...first, ...second])
  return { sent: keysSent, pairs: [[a, b], [c, d]] }
}

t.test('maxInFlight: each lane has its own window (one client\'s batch never waits for another\'s)', async (t) => {
  const { sent, pairs } = await twoTurns(1, ['alice', 'bob'])
  t.same(sent, pairs, 'bob\'s batch went while alice\'s was in flight')
})

t.test('without maxInFlight, every turn\'s batch is sent at once', async (t) => {
  const { sent, pairs } = await twoTurns(undefined, ['', ''])
  t.same(sent, pairs, 'two batches in flight to one primary')
})

t.test('maxInFlight below 1 is refused: it would hold every request forever', async (t) => {
  const table = new RoutingTable(settled)
  for (const bad of [0, -1, 0.5, Number.NaN]) t.throws(() => gatedQueue(bad, table), RangeError, String(bad))
})
