import t from 'tap'
import { mkdtempSync, rmSync, readdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  parseGroupSpec, initialMap, validateMap, primaryOf, ringOf, normalizeNodeUrl, MapError, type ClusterMap
} from '../../src/membership/map'
import { MapFile, MAP_FILE } from '../../src/membership/map-file'
import { RING_DEFAULTS } from '../../src/ring/ring'

function mapError (t: tap.Test, fn: () => unknown, what: string): void {
  try {
    fn()
    t.fail(`${what}: expected MapError`)
  } catch (err) {
    t.ok(err instanceof MapError, `${what}: MapError (${(err as Error).message})`)
  }
}

function goodMap (): ClusterMap {
  return initialMap([
    { id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 },
    { id: 'g2', url: 'http://127.0.0.1:7002', weight: 2 }
  ])
}

t.test('parseGroupSpec', async (t) => {
  t.same(parseGroupSpec('g1=http://127.0.0.1:7001@2'), { id: 'g1', url: 'http://127.0.0.1:7001', weight: 2 })
  t.same(parseGroupSpec('g1=http://127.0.0.1:7001'), { id: 'g1', url: 'http://127.0.0.1:7001', weight: 1 }, 'weight defaults to 1')
  t.same(parseGroupSpec('g_2-b=http://127.0.0.1:7002/@0.5'), { id: 'g_2-b', url: 'http://127.0.0.1:7002', weight: 0.5 }, 'trailing slash normalized, fractional weight')
  t.same(parseGroupSpec('G9=http://localhost:80@1000'), { id: 'G9', url: 'http://localhost', weight: 1000 }, 'default port dropped by URL origin')
  const bad = [
    'g1', '=http://127.0.0.1:7001', 'g1=', 'g1=127.0.0.1:7001', 'g1=ftp://127.0.0.1:7001',
    'g1=http://127.0.0.1:7001/path', 'g1=http://127.0.0.1:7001?x=1', 'g1=http://127.0.0.1:7001@0', 'g1=http://127.0.0.1:7001@-1',
    'g1=http://127.0.0.1:7001@abc', 'g1=http://127.0.0.1:7001@1001', '_g=http://127.0.0.1:7001', '-g=http://127.0.0.1:7001',
    'g 1=http://127.0.0.1:7001', 'g/1=http://127.0.0.1:7001', `${'g'.repeat(64)}=http://127.0.0.1:7001`, 'g1=not a url'
  ]
  for (const spec of bad) mapError(t, () => parseGroupSpec(spec), JSON.stringify(spec))
  t.equal(normalizeNodeUrl('http://127.0.0.1:7001/'), 'http://127.0.0.1:7001')
  t.same(parseGroupSpec('g1=https://127.0.0.1:7001'), { id: 'g1', url: 'https://127.0.0.1:7001', weight: 1 }, 'https nodes (TLS data ports)')
})

t.test('initialMap', async (t) => {
  const m = goodMap()
  t.equal(m.epoch, 1)
  t.same(m.ring, RING_DEFAULTS)
  t.same(m.groups.map((g) => [g.id, g.weight, g.state, g.nodes]), [
    ['g1', 1, 'active', [{ url: 'http://127.0.0.1:7001', role: 'primary' }]],
    ['g2', 2, 'active', [{ url: 'http://127.0.0.1:7002', role: 'primary' }]]
  ])
  t.equal(validateMap(m), m, 'an initial map is valid')
  mapError(t, () => initialMap([{ id: 'g1', url: 'http://127.0.0.1:1', weight: 1 }, { id: 'g1', url: 'http://127.0.0.1:2', weight: 1 }]), 'duplicate group id')
})

t.test('primaryOf and ringOf', async (t) => {
  const m = goodMap()
  t.same(primaryOf(m, 'g2'), { url: 'http://127.0.0.1:7002', role: 'primary' })
  t.equal(primaryOf(m, 'nope'), undefined)
  t.same([...ringOf(m).pointCounts().keys()].sort(), ['g1', 'g2'], 'every active group is on the ring')
  const draining: ClusterMap = { ...m, groups: m.groups.map((g) => g.id === 'g1' ? { ...g, state: 'draining' as const } : g) }
  t.same([...ringOf(draining).pointCounts().keys()].sort(), ['g2'], 'a draining group owns no keys under the new map (they are handed over)')
})

t.test('validateMap rejects bad maps', async (t) => {
  const base = goodMap()
  const mutate = (f: (m: any) => void): unknown => {
    const copy = JSON.parse(JSON.stringify(base))
    f(copy)
    return copy
  }
  const cases: Array<[string, unknown]> = [
    ['null', null],
    ['a string', 'map'],
    ['negative epoch', mutate((m) => { m.epoch = -1 })],
    ['fractional epoch', mutate((m) => { m.epoch = 1.5 })],
    ['string epoch', mutate((m) => { m.epoch = '1' })],
    ['missing ring', mutate((m) => { delete m.ring })],
    ['ring with other algorithm', mutate((m) => { m.ring.algorithm = 'sha1' })],
    ['ring with 0 vnodes', mutate((m) => { m.ring.vnodesPerWeight = 0 })],
    ['groups not an array', mutate((m) => { m.groups = {} })],
    ['duplicate group', mutate((m) => { m.groups[1].id = 'g1' })],
    ['bad group id', mutate((m) => { m.groups[0].id = 'bad id' })],
    ['zero weight', mutate((m) => { m.groups[0].weight = 0 })],
    ['string weight', mutate((m) => { m.groups[0].weight = '1' })],
    ['unknown state', mutate((m) => { m.groups[0].state = 'gone' })],
    ['no nodes', mutate((m) => { m.groups[0].nodes = [] })],
    ['nodes not an array', mutate((m) => { m.groups[0].nodes = null })],
    ['two primaries', mutate((m) => { m.groups[0].nodes.push({ url: 'http://127.0.0.1:7009', role: 'primary' }) })],
    ['no primary', mutate((m) => { m.groups[0].nodes[0].role = 'replica' })],
    ['unknown role', mutate((m) => { m.groups[0].nodes[0].role = 'leader' })],
    ['bad node url', mutate((m) => { m.groups[0].nodes[0].url = 'ftp://127.0.0.1:1' })],
    ['handover without previous', mutate((m) => { m.handover = {} })],
    ['handover previous not an array', mutate((m) => { m.handover = { previous: 'g1' } })],
    ['handover member with a bad id', mutate((m) => { m.handover = { previous: [{ id: 'bad id', weight: 1 }] } })],
    ['handover member with a bad weight', mutate((m) => { m.handover = { previous: [{ id: 'g1', weight: 0 }] } })]
  ]
  for (const [name, value] of cases) mapError(t, () => validateMap(value), name)
  t.ok(validateMap(mutate((m) => { m.handover = { previous: [{ id: 'g1', weight: 1 }] } })), 'a well-formed handover is fine')
  t.ok(validateMap(mutate((m) => { m.groups[0].nodes.push({ url: 'http://127.0.0.1:7009', role: 'replica' }) })), 'a replica is fine')
  t.ok(validateMap(mutate((m) => { m.groups = [] })), 'an empty map is well-formed')
})

t.test('MapFile round-trip', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-mapfile-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const nested = join(dir, 'router', 'data')
  const file = new MapFile(nested)
  t.equal(file.path, join(nested, MAP_FILE))
  t.equal(file.load(), undefined, 'no file yet: undefined')
  const m = goodMap()
  file.save(m)
  t.ok(existsSync(file.path), 'save creates the directory and the file')
  t.same(new MapFile(nested).load(), m, 'a fresh MapFile loads what was saved')
  const next: ClusterMap = { ...m, epoch: 2, groups: m.groups.slice(0, 1) }
  file.save(next)
  t.same(file.load(), next, 'save replaces the map')
  t.same(readdirSync(nested), [MAP_FILE], 'no temp file left behind')
  t.same(JSON.parse(readFileSync(file.path, 'utf8')), next, 'the file is plain JSON')

  writeFileSync(file.path, '{"epoch": 3, "ring": ')
  t.throws(() => file.load(), 'a torn file is an error, not an empty map')
  writeFileSync(file.path, JSON.stringify({ ...m, epoch: -5 }))
  t.throws(() => file.load(), MapError, 'an invalid map on disk is a MapError')
})
