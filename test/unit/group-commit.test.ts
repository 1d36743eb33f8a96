import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GroupCommit, type GroupCommitStats } from '../../src/storage/group-commit'
import { KvStore, type OpOutcome, type StoreOp } from '../../src/storage/store'

/** A fake transaction: records each commit's ops; an op 'boom' fails the whole commit. */
function recorder (maxOps: number, opts: { manual?: boolean } = {}) {
  const commits: string[][] = []
  const stats: GroupCommitStats[] = []
  const scheduled: Array<() => void> = []
  const q = new GroupCommit<string, string>({
    maxOps,
    commit: (ops) => {
      commits.push([...ops])
      if (ops.includes('boom')) throw new Error('SQLITE_BUSY: database is locked')
      return ops.map((o) => o.startsWith('bad') ? `refused:${o}` : `ok:${o}`)
    },
    schedule: opts.manual === true ? (f) => { scheduled.push(f) } : undefined,
    onCommit: (s) => { stats.push(s) }
  })
  return { q, commits, stats, scheduled }
}

t.test('concurrent submissions share one commit, each gets its own results in order', async (t) => {
  const { q, commits, stats } = recorder(256)
  const p = [q.submit(['a']), q.submit(['b', 'c']), q.submit(['d'])]
  t.equal(commits.length, 0, 'nothing commits synchronously below the cap')
  t.equal(q.pending, 4)
  const results = await Promise.all(p)
  t.same(commits, [['a', 'b', 'c', 'd']], 'one transaction for all four ops')
  t.same(results, [['ok:a'], ['ok:b', 'ok:c'], ['ok:d']])
  t.equal(stats.length, 1)
  t.match(stats[0], { ops: 4, units: 3, ok: true })
  t.equal(q.pending, 0)
})

t.test('no promise settles before its commit ran', async (t) => {
  const { q, commits, scheduled } = recorder(256, { manual: true })
  let settled = false
  const p = q.submit(['a']).then((r) => { settled = true; return r })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(settled, false, 'still waiting: the flush has not run')
  t.equal(commits.length, 0)
  t.equal(scheduled.length, 1, 'one flush scheduled')
  q.submit(['b']).catch(() => undefined)
  t.equal(scheduled.length, 1, 'a second submit does not schedule another flush')
  scheduled[0]?.()
  t.same(await p, ['ok:a'])
  t.equal(settled, true)
  t.same(commits, [['a', 'b']])
})

t.test('maxOps caps a transaction; a unit is never split', async (t) => {
  const { q, commits } = recorder(3)
  const p = [q.submit(['a']), q.submit(['b']), q.submit(['c']), q.submit(['d', 'e']), q.submit(['f', 'g', 'h', 'i']), q.submit(['j'])]
  t.same(commits, [['a', 'b', 'c'], ['d', 'e'], ['f', 'g', 'h', 'i']], 'full at 3 commits at once; d,e would overflow with f..i; f..i alone (over the cap)')
  const results = await Promise.all(p)
  t.same(commits[3], ['j'], 'the rest on the scheduled flush')
  t.same(results[4], ['ok:f', 'ok:g', 'ok:h', 'ok:i'])
})

t.test('maxOps 1 commits every unit alone and synchronously (the baseline)', async (t) => {
  const { q, commits, scheduled } = recorder(1, { manual: true })
  const p1 = q.submit(['a'])
  t.same(commits, [['a']], 'committed inside submit')
  const p2 = q.submit(['b'])
  const p3 = q.submit(['c', 'd'])
  t.same(commits, [['a'], ['b'], ['c', 'd']], 'one transaction each; a batch stays whole')
  t.equal(scheduled.length, 0, 'nothing deferred')
  t.same(await Promise.all([p1, p2, p3]), [['ok:a'], ['ok:b'], ['ok:c', 'ok:d']])
})

t.test('a per-op failure is that op\'s result only', async (t) => {
  const { q, commits } = recorder(256)
  const [a, b, c] = await Promise.all([q.submit(['a']), q.submit(['bad1']), q.submit(['c'])])
  t.same(commits.length, 1)
  t.same([a, b, c], [['ok:a'], ['refused:bad1'], ['ok:c']])
})

t.test('a failed transaction rejects every unit in it, and only those', async (t) => {
  const { q, stats } = recorder(256)
  const inFailed = [q.submit(['a']), q.submit(['boom']), q.submit(['c', 'd'])]
  const settled = await Promise.allSettled(inFailed)
  for (const s of settled) {
    t.equal(s.status, 'rejected')
    if (s.status === 'rejected') t.match((s.reason as Error).message, /SQLITE_BUSY/)
  }
  t.match(stats[0], { ok: false, ops: 4 })
  t.same(await q.submit(['e']), ['ok:e'], 'the queue goes on after a failed commit')
})

t.test('a commit returning the wrong number of results fails its units', async (t) => {
  const q = new GroupCommit<string, string>({ maxOps: 10, commit: () => ['x'] })
  await t.rejects(Promise.all([q.submit(['a']), q.submit(['b'])]), /2 ops/)
  t.throws(() => new GroupCommit<string, string>({ maxOps: 0, commit: () => [] }), RangeError)
  t.same(await q.submit([]), [], 'an empty unit resolves at once')
})

function tempStore (t: tap.Test, synchronous: 'NORMAL' | 'FULL' = 'NORMAL'): KvStore {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-gc-'))
  const s = new KvStore({ path: join(dir, 'shard.db'), nodeId: 'n1', synchronous })
  t.teardown(() => { s.close(); rmSync(dir, { recursive: true, force: true }) })
  return s
}

t.test('over a real store: concurrent puts coalesce, a failed precondition fails alone', async (t) => {
  const store = tempStore(t)
  let transactions = 0
  const q = new GroupCommit<StoreOp, OpOutcome>({ maxOps: 256, commit: (ops) => { transactions++; return store.applyOps(ops) } })
  const first = store.put('c', Buffer.from('c0'), 'text/plain')
  if (!first.ok) throw new Error('setup')
  const out = await Promise.all([
    q.submit([{ op: 'put', key: 'a', value: Buffer.from('a1'), contentType: 'text/plain' }]),
    q.submit([{ op: 'put', key: 'c', value: Buffer.from('c1'), contentType: 'text/plain', conditions: { ifMatch: ['nope'] } }]),
    q.submit([{ op: 'put', key: 'b', value: Buffer.from('b1'), contentType: 'text/plain' }, { op: 'get', key: 'b' }])
  ])
  t.equal(transactions, 1, 'one transaction')
  t.match(out[0], [{ kind: 'write', outcome: { ok: true, existed: false } }])
  t.match(out[1], [{ kind: 'write', outcome: { ok: false, reason: 'precondition_failed', current: first.version } }])
  t.match(out[2], [{ kind: 'write', outcome: { ok: true } }, { kind: 'read' }])
  t.equal(store.get('a')?.value.toString(), 'a1')
  t.equal(store.get('b')?.value.toString(), 'b1')
  t.equal(store.get('c')?.value.toString(), 'c0', 'the failed one changed nothing')
})
