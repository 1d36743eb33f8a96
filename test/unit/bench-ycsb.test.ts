import t from 'tap'
import { ScrambledZipfianGenerator, ZipfianGenerator, fnvHash64, seededRandom, zeta } from '../../bench/zipfian'
import { WORKLOADS, chooseOp, formatYcsbTable, workloadOperation, ycsbKey, type YcsbStore } from '../../bench/ycsb-workloads'
import { parseProcStat, treeTicks } from '../../bench/proc-cpu'
import type { Measurement } from '../../bench/ratios'

t.test('the seeded generator is reproducible and uniform enough', async (t) => {
  const a = seededRandom(42)
  const b = seededRandom(42)
  const xs = Array.from({ length: 1000 }, () => a())
  t.same(xs, Array.from({ length: 1000 }, () => b()), 'same seed, same sequence')
  t.not(seededRandom(43)(), xs[0], 'another seed, another sequence')
  t.ok(xs.every((x) => x >= 0 && x < 1))
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length
  t.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`)
})

t.test('zeta', async (t) => {
  t.equal(zeta(1, 0.99), 1)
  t.ok(Math.abs(zeta(2, 0.99) - (1 + 1 / Math.pow(2, 0.99))) < 1e-12)
})

t.test('zipfian: item i is drawn in proportion to 1/(i+1)^0.99', async (t) => {
  const n = 100
  const draws = 200_000
  const gen = new ZipfianGenerator(n, seededRandom(7))
  const counts = new Array<number>(n).fill(0)
  let outside = 0
  for (let i = 0; i < draws; i++) {
    const v = gen.next()
    if (!(Number.isInteger(v) && v >= 0 && v < n)) outside++
    else counts[v] = (counts[v] ?? 0) + 1
  }
  t.equal(outside, 0, 'every draw is an item')
  const zn = zeta(n, 0.99)
  // The first items, where Gray's approximation is exact (0 and 1) or close.
  for (const i of [0, 1]) {
    const expected = draws / Math.pow(i + 1, 0.99) / zn
    t.ok(Math.abs((counts[i] ?? 0) - expected) < expected * 0.05, `item ${i}: ${counts[i]} vs ${Math.round(expected)} expected`)
  }
  t.ok((counts[0] ?? 0) > (counts[9] ?? 0) * 5, 'the head is much hotter than item 9')
  const head = counts.slice(0, 10).reduce((s, c) => s + c, 0)
  t.ok(head / draws > 0.45 && head / draws < 0.65, `top 10% of items take about half the draws (${(head / draws).toFixed(3)})`)
})

t.test('fnvHash64 is YCSB\'s Utils.fNVhash64', async (t) => {
  // FNV-1a of eight zero bytes, as a Java long: 0xA8C7F832281A39C5 is negative there, so abs.
  t.equal(fnvHash64(0), 0x5738_07CD_D7E5_C63Bn)
  t.ok(fnvHash64(1) >= 0n)
  t.not(fnvHash64(1), fnvHash64(2))
})

t.test('scrambled zipfian: deterministic with a seed, in range, skewed but spread', async (t) => {
  const records = 10_000
  const a = new ScrambledZipfianGenerator(records, seededRandom(1))
  const b = new ScrambledZipfianGenerator(records, seededRandom(1))
  const xs = Array.from({ length: 50_000 }, () => a.next())
  t.same(xs, Array.from({ length: 50_000 }, () => b.next()), 'same seed, same keys')
  t.ok(xs.every((x) => Number.isInteger(x) && x >= 0 && x < records), 'every draw is a record number')
  const counts = new Map<number, number>()
  for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1)
  const sorted = [...counts.values()].sort((p, q) => q - p)
  const top1pct = sorted.slice(0, records / 100).reduce((s, c) => s + c, 0)
  t.ok(top1pct / xs.length > 0.2, `the hottest 1% of records take a large share (${(top1pct / xs.length).toFixed(3)})`)
  t.ok(counts.size > records / 4, `yet many records are touched (${counts.size})`)
  const hottest = [...counts.entries()].sort((p, q) => q[1] - p[1])[0]?.[0] ?? -1
  t.not(hottest, 0, 'scrambled: the hottest record is not the first inserted')
})

t.test('workloads are YCSB\'s A, B, C and F', async (t) => {
  t.same(WORKLOADS.map((w) => [w.id, w.read, w.update, w.readModifyWrite]), [['A', 0.5, 0.5, 0], ['B', 0.95, 0.05, 0], ['C', 1, 0, 0], ['F', 0.5, 0, 0.5]])
  for (const w of WORKLOADS) t.equal(w.read + w.update + w.readModifyWrite, 1, `${w.id} adds up`)
  const [A, , C, F] = WORKLOADS
  t.equal(chooseOp(A!, 0.49), 'read')
  t.equal(chooseOp(A!, 0.5), 'update')
  t.equal(chooseOp(C!, 0.999), 'read')
  t.equal(chooseOp(F!, 0.7), 'readModifyWrite')
})

t.test('a workload operation drives the store with the mix and counts lost read-modify-writes', async (t) => {
  const calls = { read: 0, update: 0, rmw: 0 }
  const keys = new Set<string>()
  const store: YcsbStore = {
    insert: async () => {},
    read: async (k) => { calls.read++; keys.add(k) },
    update: async (k) => { calls.update++; keys.add(k) },
    readModifyWrite: async () => { calls.rmw++; return calls.rmw % 2 === 0 },
    close: async () => {}
  }
  const f = workloadOperation(store, WORKLOADS[3]!, 1000, Buffer.alloc(1), 9)
  let served = 0
  for (let i = 0; i < 2000; i++) served += await f.op()
  t.equal(served, 2000, 'one key per op')
  t.equal(calls.update, 0)
  t.ok(calls.read > 850 && calls.read < 1150, `about half reads (${calls.read})`)
  t.equal(f.conflicts(), Math.ceil(calls.rmw / 2))
  t.ok([...keys].every((k) => /^user\d+$/.test(k)))
  t.equal(ycsbKey(12), 'user12')
})

t.test('/proc/<pid>/stat: utime + stime of a process tree', async (t) => {
  const line = '1234 (node (worker) x) S 1000 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 11 0 999 0 0'
  t.same(parseProcStat(line), { pid: 1234, ppid: 1000, ticks: 300 }, 'a command name with spaces and parentheses')
  t.equal(parseProcStat('garbage'), undefined)
  const stats = [
    { pid: 1, ppid: 0, ticks: 1000 },
    { pid: 10, ppid: 1, ticks: 5 },
    { pid: 11, ppid: 10, ticks: 7 },
    { pid: 12, ppid: 10, ticks: 11 },
    { pid: 20, ppid: 1, ticks: 100 }
  ]
  t.equal(treeTicks(stats, [10]), 23, 'a node and its workers')
  t.equal(treeTicks(stats, [10, 11]), 23, 'a pid listed twice counts once')
  t.equal(treeTicks(stats, [99]), 0, 'a process that is gone counts nothing')
})

t.test('the YCSB summary table', async (t) => {
  const m = (name: string, reqPerSec: number, cpu?: number): Measurement => ({
    scenario: 'ycsb', name, target: 't', connections: 16, durationS: 10, requests: reqPerSec * 10, keys: reqPerSec * 10, reqPerSec, keysPerSec: reqPerSec,
    latencyMs: { p50: 1.23, p99: 2, p999: 3, mean: 1, max: 4 }, errors: 0, firstError: undefined, ...(cpu === undefined ? {} : { serverCpuUsPerOp: cpu })
  })
  const out = formatYcsbTable([m('shardkv insert', 1234.4, 3649.6), m('etcd insert', 1000)], ['shardkv', 'unreplicated', 'etcd'], ['insert', 'A'])
  t.equal(out, [
    '| phase | shardkv ops/s | etcd ops/s |',
    '| --- | --- | --- |',
    '| insert | 1,234 (p50 1.2 ms, 3,650 µs CPU) | 1,000 (p50 1.2 ms) |',
    '| workload A | - | - |'
  ].join('\n'))
})
