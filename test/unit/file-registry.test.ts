import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { FileRegistry } from '../../src/registry/file-registry'
import { initialMap, type ClusterMap } from '../../src/membership/map'
import type { RebalanceState } from '../../src/membership/rebalance'

t.test('the file registry: intent, publish, and a watcher that sees newer maps only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-file-registry-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const reg = new FileRegistry(dir, 20)
  t.same(await reg.load(), { map: undefined, pending: undefined }, 'empty at first')
  const m1 = initialMap([{ id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }])
  await reg.savePending(m1)
  t.same(await reg.load(), { map: undefined, pending: m1 }, 'the intent alone')
  await reg.publish(m1)
  t.same(await reg.load(), { map: m1, pending: undefined }, 'published: the intent is cleared')

  t.equal(await reg.loadRebalance(), undefined, 'no rebalance yet')
  const state = { id: 'r1', kind: 'add', group: 'g2', phase: 'copying', fromEpoch: m1.epoch } as unknown as RebalanceState
  await reg.saveRebalance(state)
  t.same(await reg.loadRebalance(), state, 'the rebalance state round-trips')

  const seen: number[] = []
  const w = reg.watch(m1.epoch, (m) => seen.push(m.epoch))
  t.teardown(async () => { await w.close() })
  const m2: ClusterMap = { ...m1, epoch: m1.epoch + 1 }
  await reg.publish(m2)
  const deadline = Date.now() + 10_000
  while (seen.length === 0 && Date.now() < deadline) await sleep(20)
  t.same(seen, [m2.epoch], 'the watcher saw the newer map, not the one it started after')
})
