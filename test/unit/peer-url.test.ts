import t from 'tap'
import { fillPeers, normalizeNodeUrl, peerUrlOf, validateMap, withReportedPeer, type ClusterMap } from '../../src/membership/map'

const DATA = 'http://127.0.0.1:7001'

t.test('peerUrlOf: the data host with the reported peer port and scheme', async (t) => {
  const table: Array<[string, Parameters<typeof peerUrlOf>[1], string]> = [
    ['no peer listener', {}, DATA],
    ['a peer port', { peerPort: 7101, peerTls: false }, 'http://127.0.0.1:7101'],
    ['a peer port under TLS', { peerPort: 7101, peerTls: true }, 'https://127.0.0.1:7101'],
    ['peerTls alone means nothing', { peerTls: true }, DATA],
    ['a port that is not a number', { peerPort: '7101' }, DATA],
    ['port 0 (not resolved yet)', { peerPort: 0 }, DATA],
    ['a port out of range', { peerPort: 70000 }, DATA],
    ['a fractional port', { peerPort: 7101.5 }, DATA]
  ]
  for (const [name, health, want] of table) t.equal(peerUrlOf(DATA, health), want, name)
  t.equal(peerUrlOf('https://[::1]:8443', { peerPort: 9443, peerTls: true }), 'https://[::1]:9443', 'IPv6 host kept')
  t.equal(peerUrlOf('http://node-a.internal:80', { peerPort: 7101 }), 'http://node-a.internal:7101', 'only the port comes from the node')
})

function map (peer?: string): ClusterMap {
  return {
    epoch: 4,
    ring: { vnodesPerWeight: 8, algorithm: 'md5' },
    groups: [{ id: 'g1', weight: 1, state: 'active', nodes: [{ url: DATA, role: 'primary', ...(peer !== undefined ? { peer } : {}) }, { url: 'http://127.0.0.1:7002', role: 'replica', inSync: true }] }]
  }
}

t.test('withReportedPeer: a new epoch only when the map disagrees with what the node reported', async (t) => {
  const m = map()
  t.equal(withReportedPeer(m, DATA, DATA), m, 'no peer listener, none in the map: unchanged')
  const set = withReportedPeer(m, DATA, 'http://127.0.0.1:7101')
  t.equal(set.epoch, 5, 'the epoch moves')
  t.equal(set.groups[0]?.nodes[0]?.peer, 'http://127.0.0.1:7101')
  t.equal(set.groups[0]?.nodes[1]?.peer, undefined, 'other nodes untouched')
  t.equal(m.groups[0]?.nodes[0]?.peer, undefined, 'the input is not mutated')
  t.equal(withReportedPeer(set, DATA, 'http://127.0.0.1:7101'), set, 'agreeing: unchanged')
  const moved = withReportedPeer(set, DATA, 'http://127.0.0.1:7201')
  t.equal(moved.groups[0]?.nodes[0]?.peer, 'http://127.0.0.1:7201', 'a restart on another peer port moves it')
  const cleared = withReportedPeer(set, DATA, DATA)
  t.notOk('peer' in (cleared.groups[0]?.nodes[0] ?? {}), 'a node without a peer listener any more loses its entry')
  t.equal(withReportedPeer(m, 'http://127.0.0.1:9999', 'http://127.0.0.1:7101'), m, 'a node not in the map: unchanged')
  t.doesNotThrow(() => validateMap(moved))
})

t.test('fillPeers: nodes without a peer get the known one; the epoch stays', async (t) => {
  const m = map()
  const known = (url: string): string | undefined => url === DATA ? 'http://127.0.0.1:7101' : url
  const filled = fillPeers(m, known)
  t.equal(filled.epoch, 4)
  t.equal(filled.groups[0]?.nodes[0]?.peer, 'http://127.0.0.1:7101')
  t.notOk('peer' in (filled.groups[0]?.nodes[1] ?? {}), 'a peer equal to the data URL is not written')
  t.equal(fillPeers(map('http://127.0.0.1:7301'), known).groups[0]?.nodes[0]?.peer, 'http://127.0.0.1:7301', 'an existing entry is the health check\'s to change')
  t.equal(fillPeers(m, () => undefined), m, 'nothing known: the same map')
})

t.test('node and peer URLs: http or https origins', async (t) => {
  t.equal(normalizeNodeUrl('https://127.0.0.1:7443/'), 'https://127.0.0.1:7443')
  t.throws(() => normalizeNodeUrl('ftp://127.0.0.1:21'), /http: or https:/)
  t.throws(() => normalizeNodeUrl('http://user:pw@127.0.0.1:7001'), /origin/)
  t.throws(() => validateMap(map('http://127.0.0.1:7101/x')), /must be an origin/)
  t.throws(() => validateMap(map(42 as unknown as string)), /peer that is not an origin/)
  t.doesNotThrow(() => validateMap(map('https://127.0.0.1:7101')))
})
