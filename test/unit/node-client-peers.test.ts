import t from 'tap'
import { NodeClient } from '../../src/peer/node-client'

t.test('peers learned of nodes outside the published map are forgotten', async (t) => {
  const map = new Map([['http://127.0.0.1:7001', 'http://127.0.0.1:17001']])
  const nodes = new NodeClient({ mapPeerOf: (url) => map.get(url) })
  t.teardown(async () => { await nodes.close() })
  nodes.learnPeer('http://127.0.0.1:7001', 'http://127.0.0.1:27001')
  nodes.learnPeer('http://127.0.0.1:9999', 'http://127.0.0.1:29999')
  nodes.retain(new Set(['http://127.0.0.1:7001']))
  t.equal(nodes.peerOf('http://127.0.0.1:7001'), 'http://127.0.0.1:27001', 'a node in the map keeps what it reported (its newest peer port)')
  t.equal(nodes.peerOf('http://127.0.0.1:9999'), undefined, 'a probed address that never joined is forgotten')
  nodes.retain(new Set())
  t.equal(nodes.peerOf('http://127.0.0.1:7001'), 'http://127.0.0.1:17001', 'once forgotten, the map\'s peer URL is used')
})
