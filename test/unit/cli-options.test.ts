import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { intOption, parseRouterUrl } from '../../scripts/shardkv/common'
import { failureLine, isUsageError, UsageError } from '../../scripts/cli'
import { ShardKvError } from '../../src/protocol/errors'
import { KvStore } from '../../src/storage/store'
import { DigestReader } from '../../src/storage/digest'

t.test('option values: router URLs and bounded integers, refused as usage errors', async (t) => {
  t.equal(parseRouterUrl('http://127.0.0.1:8080/'), 'http://127.0.0.1:8080')
  t.equal(parseRouterUrl('https://kv.example:443'), 'https://kv.example:443')
  for (const bad of ['127.0.0.1:8080', 'ftp://x', 'http://x/?a=1', 'not a url']) t.throws(() => parseRouterUrl(bad), { code: 'commander.invalidArgument' }, bad)
  const n = intOption(1, 10)
  t.equal(n('7'), 7)
  for (const bad of ['0', '11', '-1', '1.5', 'x', '']) t.throws(() => n(bad), { code: 'commander.invalidArgument' }, `"${bad}"`)
})

t.test('failures: one line, the server\'s code, usage errors (ours and parseArgs\') said as such', async (t) => {
  t.ok(isUsageError(new UsageError('x')))
  t.ok(isUsageError(Object.assign(new TypeError('Unknown option \'--x\''), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })))
  t.notOk(isUsageError(new Error('x')))
  t.equal(failureLine('shardkv failover', new ShardKvError('no_such_group', 'no g9')), 'shardkv failover: no g9 (no_such_group)\n')
  t.equal(failureLine('add-shard', new UsageError('--id is required')), 'add-shard: --id is required (see --help)\n')
  t.equal(failureLine('add-shard', new UsageError('--id is required (see --help)')), 'add-shard: --id is required (see --help)\n')
})

t.test('node digests: equal rows digest alike page by page; a changed version, an extra row or a foreign key shows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-cli-digest-'))
  const a = new KvStore({ path: join(dir, 'a.db') })
  const b = new KvStore({ path: join(dir, 'b.db') })
  t.teardown(() => { a.close(); b.close(); rmSync(dir, { recursive: true, force: true }) })
  const keys = Array.from({ length: 25 }, (_, i) => `k${String(i).padStart(2, '0')}`)
  for (const k of keys) a.put(k, Buffer.from(k), 'text/plain')
  a.delete('k03')
  // b is a's replica: the same rows, versions included.
  for (const r of a.changesSince(0, 100)) {
    b.database.prepare('INSERT OR REPLACE INTO kv (key, value, content_type, version, seq, deleted) VALUES (?, ?, ?, ?, ?, ?)').run(r.key, r.value, r.contentType, r.version, r.seq, r.deleted ? 1 : 0)
  }
  const none = (): boolean => false
  const pa = new DigestReader(a)
  const pb = new DigestReader(b)
  const first = pa.page('', undefined, 10, none)
  t.match(first, { rows: 10, tombstones: 1, foreign: 0, last: 'k09', done: false })
  t.equal(pb.page('', first.last, 100, none).digest, first.digest, 'the replica\'s digest of the same range is equal')
  const rest = pa.page('k09', undefined, 100, none)
  t.match(rest, { rows: 15, last: 'k24', done: true })
  t.match(pa.page('k24', undefined, 10, none), { rows: 0, last: '', done: true }, 'past the end: an empty page')
  t.match(pa.page('', 'k04', 3, none), { rows: 3, done: false }, 'a bounded range longer than the limit is not done')

  b.database.prepare("UPDATE kv SET version = version || 'x' WHERE key = 'k05'").run()
  t.not(pb.page('', first.last, 100, none).digest, first.digest, 'another version of one key changes the digest')
  t.equal(pb.page('k09', undefined, 100, none).digest, rest.digest, 'and only that page\'s')
  b.database.prepare("INSERT INTO kv (key, value, content_type, version, seq, deleted) VALUES ('k10a', x'00', 'text/plain', 'v', 1000000, 0)").run()
  t.match(pb.page('k09', undefined, 100, none), { rows: 16 }, 'an extra row is counted')
  const foreign = pa.page('', undefined, 100, (k) => k.endsWith('7'))
  t.match(foreign, { foreign: 2, foreignSample: ['k07', 'k17'] }, 'foreign keys are counted and named')
})
