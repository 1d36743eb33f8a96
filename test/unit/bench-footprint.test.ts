import t from 'tap'
import { parseSmapsRollup, parseVmRss, roleOf, settled, summarize, treeMemory, treePids, type ProcMemory } from '../../bench/proc-memory'
import { formatFootprint } from '../../bench/footprint'

t.test('VmRSS from /proc/<pid>/status', async (t) => {
  const status = 'Name:\tnode\nVmPeak:\t  1000 kB\nVmRSS:\t   80468 kB\nRssAnon:\t   32788 kB\n'
  t.equal(parseVmRss(status), 80468)
  t.equal(parseVmRss('Name:\tkthreadd\nState:\tS (sleeping)\n'), undefined, 'a kernel thread has none')
})

t.test('PSS and private pages from smaps_rollup', async (t) => {
  const rollup = [
    '00400000-7ffdb97c3000 ---p 00000000 00:00 0                              [rollup]',
    'Rss:               41968 kB',
    'Pss:               39877 kB',
    'Pss_Anon:           6688 kB',
    'Shared_Clean:       3096 kB',
    'Private_Clean:     32184 kB',
    'Private_Dirty:      6688 kB'
  ].join('\n')
  t.same(parseSmapsRollup(rollup), { pssKb: 39877, privateKb: 32184 + 6688 }, 'Pss, not Pss_Anon; both private kinds')
  t.equal(parseSmapsRollup('Rss: 1 kB\n'), undefined)
})

t.test('a tree: the roots and every descendant, parents first, nothing else', async (t) => {
  const stats = [
    { pid: 1, ppid: 0, ticks: 0 },
    { pid: 10, ppid: 1, ticks: 0 },
    { pid: 11, ppid: 10, ticks: 0 },
    { pid: 12, ppid: 11, ticks: 0 },
    { pid: 13, ppid: 10, ticks: 0 },
    { pid: 20, ppid: 1, ticks: 0 }
  ]
  t.same(treePids(stats, [10]), [10, 11, 13, 12])
  t.same(treePids(stats, [11, 20]), [11, 20, 12])
  t.same(treePids(stats, [99]), [], 'a root that is gone')
})

t.test('roles by command line: a shard node under a shard node is a worker', async (t) => {
  const procs: ProcMemory[] = [
    { pid: 1, ppid: 0, cmdline: 'node dist/scripts/start-local.js --data-dir d', rssKb: 50, pssKb: 20, privateKb: 10 },
    { pid: 2, ppid: 1, cmdline: '/usr/bin/node /r/dist/shards/main.js --port 7001', rssKb: 80, pssKb: 40, privateKb: 30 },
    { pid: 3, ppid: 2, cmdline: '/usr/bin/node /r/dist/shards/main.js --port 7001', rssKb: 70, pssKb: 35, privateKb: 30 },
    { pid: 4, ppid: 1, cmdline: '/usr/bin/node /r/dist/router/main.js --port 8080', rssKb: 90, pssKb: 45, privateKb: 40 },
    { pid: 5, ppid: 1, cmdline: '/usr/bin/node /r/dist/coordinator/main.js --port 8090', rssKb: 60, pssKb: 30, privateKb: 20 }
  ]
  t.same(procs.map((p) => roleOf(p, procs)), ['launcher', 'shard node', 'shard worker', 'router', 'coordinator'])
  const s = summarize(procs, (p) => roleOf(p, procs))
  t.match(s, { processes: 5, rssKb: 350, pssKb: 170, privateKb: 130 })
  t.same(s.roles.map((r) => [r.role, r.processes, r.rssKb]), [['launcher', 1, 50], ['shard node', 1, 80], ['shard worker', 1, 70], ['router', 1, 90], ['coordinator', 1, 60]])
  t.match(formatFootprint({ name: 'npm start', ...s, settleS: 12, steady: true }), /^npm start: 5 processes, VmRSS 0 MB, PSS 0 MB, private 0 MB \(settled after 12 s\)\n {6}VmRSS per process: launcher 1 × 0 MB, shard node 1 × 0 MB/)
  const threaded = procs.slice(0, 3)
  t.same(threaded.map((p) => roleOf(p, threaded)), ['launcher with router and coordinator threads', 'shard node', 'shard worker'], 'no router process: the launcher hosts it')
})

t.test('settled: steady totals over the window, and the same processes', async (t) => {
  const s = (rssKb: number, processes = 8): { rssKb: number, processes: number } => ({ rssKb, processes })
  t.notOk(settled([s(100), s(100)]), 'too few samples')
  t.ok(settled([s(500), s(1000), s(1000), s(1005), s(998), s(1001)]), 'the last five within 1%')
  t.notOk(settled([s(1000), s(1000), s(1000), s(1000), s(1030)]), 'still growing')
  t.notOk(settled([s(1000), s(1000), s(1000, 7), s(1000), s(1000)]), 'a process came or went')
})

t.test('this process, read from /proc', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  const [self] = treeMemory([process.pid])
  t.equal(self?.pid, process.pid)
  t.ok((self?.rssKb ?? 0) > 0 && (self?.pssKb ?? 0) > 0 && (self?.privateKb ?? 0) > 0, `rss ${self?.rssKb} kB, pss ${self?.pssKb} kB, private ${self?.privateKb} kB`)
  t.ok((self?.pssKb ?? 0) <= (self?.rssKb ?? 0) + 4, 'PSS is at most RSS')
})
