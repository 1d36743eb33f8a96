import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPeerCredentials, loadPeerSecret, PeerSecret } from '../../src/auth/peer'
import { loadPeerTls } from '../../src/auth/tls'
import { judgeInSyncAsker, judgeLeaseGrantor, judgeMapInstaller, judgeShipmentSender } from '../../src/auth/senders'
import { HEADER } from '../../src/protocol/wire'

const SECRET = 'a'.repeat(20) + 'B'.repeat(23)

function tempDir (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-peer-unit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('PeerSecret accepts exactly its secret, in its header', async (t) => {
  const s = new PeerSecret(SECRET)
  t.same(s.headers, { [HEADER.peerAuth]: SECRET })
  t.ok(s.accepts({ [HEADER.peerAuth]: SECRET }))
  const refused: Array<[string, Record<string, string | string[] | undefined>]> = [
    ['no header', {}],
    ['a wrong secret', { [HEADER.peerAuth]: SECRET.slice(0, -1) + 'x' }],
    ['a prefix', { [HEADER.peerAuth]: SECRET.slice(0, 32) }],
    ['the secret twice (repeated header)', { [HEADER.peerAuth]: [SECRET, SECRET] }],
    ['an oversized value', { [HEADER.peerAuth]: SECRET + 'x'.repeat(2000) }],
    ['a bearer token instead', { authorization: `Bearer ${SECRET}` }]
  ]
  for (const [name, headers] of refused) t.notOk(s.accepts(headers), name)
})

t.test('PeerSecret refuses short or non-printable secrets', async (t) => {
  t.throws(() => new PeerSecret('short'), /at least 32/)
  t.throws(() => new PeerSecret('x'.repeat(31)), /at least 32/)
  t.throws(() => new PeerSecret('x'.repeat(20) + ' ' + 'y'.repeat(20)), /printable/)
  t.doesNotThrow(() => new PeerSecret('x'.repeat(32)))
})

t.test('loadPeerSecret trims the file and names the path in errors', async (t) => {
  const dir = tempDir(t)
  const good = join(dir, 'secret')
  writeFileSync(good, `  ${SECRET}\n`)
  t.equal(loadPeerSecret(good).value, SECRET)
  const bad = join(dir, 'bad')
  writeFileSync(bad, 'too short\n')
  t.throws(() => loadPeerSecret(bad), new RegExp(bad))
  t.throws(() => loadPeerSecret(join(dir, 'missing')), /cannot read the cluster secret file/)
})

t.test('loadPeerCredentials: nothing configured, secret only, half a TLS setup, TLS without a peer port', async (t) => {
  const dir = tempDir(t)
  const secret = join(dir, 'secret')
  writeFileSync(secret, SECRET)
  const pem = join(dir, 'x.pem')
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n')
  const none = { clusterSecretFile: '', peerTlsCert: '', peerTlsKey: '', peerTlsCa: '', port: 7001, peerPort: -1 }
  t.same(loadPeerCredentials(none), { secret: undefined, tls: undefined })
  t.equal(loadPeerCredentials({ ...none, clusterSecretFile: secret }).secret?.value, SECRET)
  t.throws(() => loadPeerCredentials({ ...none, peerTlsCert: pem, peerPort: 0 }), /--peer-tls-cert, --peer-tls-key and --peer-tls-ca together; missing --peer-tls-key, --peer-tls-ca/)
  t.throws(() => loadPeerCredentials({ ...none, peerTlsCert: pem, peerTlsKey: pem, peerTlsCa: pem }), /need a peer listener/)
  t.same(loadPeerTls({ peerTlsCert: pem, peerTlsKey: pem, peerTlsCa: pem })?.ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n')
  t.throws(() => loadPeerTls({ peerTlsCert: pem, peerTlsKey: join(dir, 'nope'), peerTlsCa: pem }), /--peer-tls-key/)
  t.throws(() => loadPeerCredentials({ ...none, clusterSecretFile: join(dir, 'nope') }), /cannot read/)
  t.throws(() => loadPeerCredentials({ ...none, peerPort: 7001 }), /is the data port/)
  t.doesNotThrow(() => loadPeerCredentials({ ...none, port: 0, peerPort: 0 }), 'both picked: two different free ports')
})

t.test('judgeShipmentSender: only the primary of the replica\'s map', async (t) => {
  const primary = 'http://127.0.0.1:7001'
  const table: Array<[string, unknown, string | undefined, boolean]> = [
    ['the primary', primary, primary, true],
    ['another node', 'http://127.0.0.1:7002', primary, false],
    ['no sender', undefined, primary, false],
    ['a non-string sender', 7001, primary, false],
    ['a map without a primary for this node', primary, undefined, false]
  ]
  for (const [name, sender, p, ok] of table) t.equal(judgeShipmentSender(sender, p).ok, ok, name)
  for (const [name, sender, p, ok] of table) t.equal(judgeInSyncAsker(sender, p).ok, ok, `in-sync: ${name}`)
})

t.test('judgeMapInstaller and judgeLeaseGrantor: only the known coordinator; the first install on the secret alone', async (t) => {
  const coord = 'http://127.0.0.1:9000'
  const installed = { epoch: 5, coordinator: coord }
  const maps: Array<[string, Parameters<typeof judgeMapInstaller>[0], { epoch: number, coordinator: unknown }, boolean]> = [
    ['first install, any claim', undefined, { epoch: 1, coordinator: 'http://x:1' }, true],
    ['first install, no claim', undefined, { epoch: 1, coordinator: undefined }, true],
    ['installed without a coordinator', { epoch: 3 }, { epoch: 4, coordinator: 'http://x:1' }, true],
    ['the known coordinator, next epoch', installed, { epoch: 6, coordinator: coord }, true],
    ['another coordinator, higher epoch', installed, { epoch: 1005, coordinator: 'http://127.0.0.1:9001' }, false],
    ['no claim, higher epoch', installed, { epoch: 6, coordinator: undefined }, false],
    ['a moved coordinator re-installing the installed epoch', installed, { epoch: 5, coordinator: 'http://127.0.0.1:9001' }, true],
    ['no claim at the installed epoch', installed, { epoch: 5, coordinator: undefined }, false]
  ]
  for (const [name, inst, claim, ok] of maps) t.equal(judgeMapInstaller(inst, claim).ok, ok, `map: ${name}`)
  t.ok(judgeLeaseGrantor(installed, coord).ok, 'lease from the coordinator')
  t.notOk(judgeLeaseGrantor(installed, 'http://127.0.0.1:9001').ok, 'lease from another URL')
  t.notOk(judgeLeaseGrantor(installed, undefined).ok, 'lease naming nobody')
  t.ok(judgeLeaseGrantor(undefined, undefined).ok, 'lease before any map names a coordinator')
})
