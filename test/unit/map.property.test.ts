import t from 'tap'
import fc from 'fast-check'
import { validateMap, MapError, type ClusterMap } from '../../src/membership/map'
import { MAX_GROUPS, MAX_RING_VNODES } from '../../src/protocol/limits'
import { vnodesFor } from '../../src/ring/ring'
import { holds } from './properties'

/**
 * The cluster map validator (src/membership/map.ts): every map a node installs, a client
 * reads from /cluster or the coordinator loads from disk goes through validateMap.
 */

function mapErrorOrValue (value: unknown): ClusterMap | undefined {
  try {
    return validateMap(value)
  } catch (err) {
    if (err instanceof MapError) return undefined
    throw err
  }
}

const groupId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,10}$/)
const port = fc.integer({ min: 1, max: 65535 })
const node = (role: 'primary' | 'replica'): fc.Arbitrary<{ url: string, role: 'primary' | 'replica', inSync?: boolean }> =>
  fc.record({ url: port.map((p) => `http://127.0.0.1:${p}`), role: fc.constant(role), inSync: fc.option(fc.boolean(), { nil: undefined }) }, { requiredKeys: ['url', 'role'] })
const group = fc.record({
  id: groupId,
  weight: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0.01, max: 1000, noNaN: true })),
  state: fc.constantFrom('active' as const, 'draining' as const),
  term: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
  nodes: fc.tuple(node('primary'), fc.array(node('replica'), { maxLength: 3 })).map(([p, r]) => [p, ...r])
}, { requiredKeys: ['id', 'weight', 'state', 'nodes'] })
const validMap = fc.record({
  epoch: fc.nat(),
  ring: fc.record({ vnodesPerWeight: fc.integer({ min: 1, max: 64 }), algorithm: fc.constant('md5' as const) }),
  groups: fc.uniqueArray(group, { selector: (g) => g.id, maxLength: 8 })
})

/** Valid maps with one field replaced by anything: the near misses a fuzzer finds first. */
const mutated = fc.tuple(validMap, fc.constantFrom('epoch', 'ring', 'groups', 'handover', 'group', 'node', 'id', 'weight'), fc.anything()).map(([m, where, v]) => {
  const copy = JSON.parse(JSON.stringify(m)) as Record<string, unknown> & { groups: Array<Record<string, unknown> & { nodes: unknown[] }> }
  const g = copy.groups[0]
  if (where === 'group' && g !== undefined) copy.groups[0] = v as never
  else if (where === 'node' && g !== undefined) g.nodes[0] = v
  else if ((where === 'id' || where === 'weight') && g !== undefined) g[where] = v
  else (copy as Record<string, unknown>)[where] = v
  return copy
})

t.test('arbitrary input: a map or a MapError (400), nothing else', async (t) => {
  holds(t, 'anything', [fc.anything()], (v) => { mapErrorOrValue(v) })
  holds(t, 'JSON values', [fc.jsonValue()], (v) => { mapErrorOrValue(v) })
  holds(t, 'valid maps with one field replaced', [mutated], (v) => { mapErrorOrValue(v) })
})

t.test('accepted maps satisfy the grammar and the bounds', async (t) => {
  holds(t, 'one primary per group, unique ids, bounded ring', [fc.oneof(validMap, mutated)], (v) => {
    const m = mapErrorOrValue(v)
    if (m === undefined) return
    return m.groups.length <= MAX_GROUPS && new Set(m.groups.map((g) => g.id)).size === m.groups.length &&
      m.groups.every((g) => g.nodes.filter((n) => n.role === 'primary').length === 1 && g.weight > 0 && g.weight <= 1000) &&
      m.groups.reduce((s, g) => s + vnodesFor(g.weight, m.ring), 0) <= MAX_RING_VNODES
  })
})

t.test('round trip: valid maps are accepted unchanged, through JSON too', async (t) => {
  holds(t, 'validateMap(JSON of a valid map) equals it', [validMap], (m) => {
    const back = validateMap(JSON.parse(JSON.stringify(m)))
    return JSON.stringify(back) === JSON.stringify(m) && validateMap(m) === m
  })
})
