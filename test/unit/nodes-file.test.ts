import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { entryByUrl, peerPortFor, planReconcile, readNodes, readNodesFile, updateNodes, writeNodesFile, type NodeEntry } from '../../src/local/nodes-file'

const g1: NodeEntry = { name: 'g1', group: 'g1', port: 7001, dataDir: '/d/g1' }
const r1: NodeEntry = { name: 'g1-r1', group: 'g1', port: 7101, dataDir: '/d/g1-r1' }
const g2: NodeEntry = { name: 'g2', group: 'g2', port: 7002, dataDir: '/d/g2', workers: 1 }

t.test('planReconcile: start what is new, stop what is gone, restart what changed', async (t) => {
  const running = (...es: NodeEntry[]): Map<string, NodeEntry> => new Map(es.map((e) => [e.name, e]))
  const table: Array<[string, NodeEntry[], Map<string, NodeEntry>, { start: string[], stop: string[] }]> = [
    ['nothing to do', [g1, r1], running(g1, r1), { start: [], stop: [] }],
    ['first start', [g1, r1], running(), { start: ['g1', 'g1-r1'], stop: [] }],
    ['add-shard', [g1, r1, g2], running(g1, r1), { start: ['g2'], stop: [] }],
    ['remove-replica', [g1], running(g1, r1), { start: [], stop: ['g1-r1'] }],
    ['a changed port restarts', [g1, { ...r1, port: 7201 }], running(g1, r1), { start: ['g1-r1'], stop: ['g1-r1'] }],
    ['a changed peer port restarts', [g1, { ...r1, peerPort: 17101 }], running(g1, r1), { start: ['g1-r1'], stop: ['g1-r1'] }],
    ['changed workers restart', [{ ...g2, workers: 2 }], running(g2), { start: ['g2'], stop: ['g2'] }],
    ['everything gone', [], running(g1, r1, g2), { start: [], stop: ['g1', 'g1-r1', 'g2'] }]
  ]
  for (const [name, desired, run, want] of table) {
    const plan = planReconcile(desired, run)
    t.same({ start: plan.start.map((e) => e.name), stop: plan.stop }, want, name)
  }
})

t.test('entryByUrl matches by port', async (t) => {
  t.equal(entryByUrl([g1, r1], 'http://127.0.0.1:7101')?.name, 'g1-r1')
  t.equal(entryByUrl([g1, r1], 'http://127.0.0.1:7999'), undefined)
  t.equal(entryByUrl([g1, r1], 'not a url'), undefined)
})

t.test('the nodes file: absent, written, edited, refused when malformed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-nodes-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  t.equal(readNodes(dir), undefined, 'absent')
  updateNodes(dir, (all) => [...all, g1])
  updateNodes(dir, (all) => [...all, r1])
  t.same(readNodes(dir), [g1, r1], 'edits accumulate')
  writeFileSync(join(dir, 'nodes.json'), '{"nodes": [{"name": "x"}]}')
  t.throws(() => readNodes(dir), /not a nodes file/, 'a malformed entry is refused')
})

t.test('peer ports: data port + 10000, none past 65535; the router\'s entry survives the scripts\' edits', async (t) => {
  t.equal(peerPortFor(7001), 17001)
  t.equal(peerPortFor(55535), 65535)
  t.equal(peerPortFor(55536), undefined, 'past 65535: none')
  t.equal(peerPortFor(0), undefined, 'a free port has no fixed peer port')
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-nodes-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeNodesFile(dir, { nodes: [{ ...g1, peerPort: 17001 }], router: { peerPort: 18080 } })
  updateNodes(dir, (all) => [...all, r1])
  t.same(readNodesFile(dir), { nodes: [{ ...g1, peerPort: 17001 }, r1], router: { peerPort: 18080 } }, 'an add keeps the router\'s peer port')
  writeFileSync(join(dir, 'nodes.json'), '{"nodes": [], "router": {"peerPort": "x"}}')
  t.throws(() => readNodes(dir), /"router" must be/, 'a malformed router entry is refused')
})
