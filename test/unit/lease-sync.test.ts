import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { KvStore } from '../../src/storage/store'
import { ReplicaStore } from '../../src/storage/replica-store'

/**
 * The primary's lease is renewed several times a second. A renewal is written without an
 * fsync (a crash that loses it only ends the lease sooner); a revocation is synced, and
 * the store's synchronous level is what it was configured to be after either. Counted
 * with strace on a real process: fsyncs between markers the script writes.
 */

const DIST = resolve(__dirname, '..', '..', 'dist', 'src', 'storage')

const SCRIPT = `
const { KvStore } = require(${JSON.stringify(join(DIST, 'store.js'))})
const { ReplicaStore } = require(${JSON.stringify(join(DIST, 'replica-store.js'))})
const store = new KvStore({ path: process.argv[1] })
const replica = new ReplicaStore(store)
const mark = (m) => require('fs').writeSync(2, 'MARK ' + m + '\\n')
const now = Date.now()
// SQLite syncs a fresh WAL's header on its first commit, whatever the level: start it first.
replica.setLease(now)
mark('renewals')
for (let i = 1; i <= 20; i++) replica.setLease(now + i * 200)
mark('revocation')
replica.setLease(0)
mark('write')
store.put('k', Buffer.from('v'), 'text/plain')
mark('end')
`

function fsyncsByPhase (dir: string): Record<string, number> | string {
  const trace = join(dir, 'trace')
  const run = spawnSync('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync,write', '-o', trace, process.execPath, '-e', SCRIPT, join(dir, 'kv.db')], { encoding: 'utf8', timeout: 60_000 })
  if (run.error !== undefined) return `strace did not run: ${run.error.message}`
  if (run.status !== 0) return `the script failed: ${run.stderr}`
  const counts: Record<string, number> = {}
  let phase = 'setup'
  for (const line of readFileSync(trace, 'utf8').split('\n')) {
    const m = /write\(2, "MARK (\w+)/.exec(line)
    if (m !== null) { phase = m[1] as string; continue }
    if (/\bf(data)?sync\(/.test(line)) counts[phase] = (counts[phase] ?? 0) + 1
  }
  return counts
}

t.test('lease renewals are not fsynced; a revocation and a client write are', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-lease-sync-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const counts = fsyncsByPhase(dir)
  if (typeof counts === 'string') { t.fail(counts); return }
  t.equal(counts.renewals ?? 0, 0, '20 renewals: no fsync')
  t.ok((counts.revocation ?? 0) >= 1, `a revocation is synced (${counts.revocation ?? 0} fsyncs)`)
  t.ok((counts.write ?? 0) >= 1, `a client write after them is synced (${counts.write ?? 0} fsyncs): FULL was restored`)
})

t.test('a renewal commits (another connection reads it) and leaves synchronous as configured', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-lease-sync-'))
  const path = join(dir, 'kv.db')
  const store = new KvStore({ path, synchronous: 'NORMAL' })
  const other = new KvStore({ path })
  t.teardown(() => { store.close(); other.close(); rmSync(dir, { recursive: true, force: true }) })
  const replica = new ReplicaStore(store)
  const until = Date.now() + 800
  replica.setLease(until)
  t.equal(other.fence().leaseUntil, until, 'the renewal is committed')
  t.equal(store.database.pragma('synchronous', { simple: true }), 1, 'NORMAL (1) again after an unsynced write')
  replica.setLease(0)
  t.equal(other.fence().leaseUntil, 0, 'the revocation is committed')
  store.database.transaction(() => { store.writeMetaUnsynced('probe', 1) })()
  t.equal(store.database.pragma('synchronous', { simple: true }), 1, 'inside a transaction it is an ordinary write')
  t.equal(other.readMeta('probe'), 1)
})
