import t from 'tap'
import { isLoopbackHost, protectedModeRefusal, type ProtectedModeInput } from '../../src/auth/protected-mode'

t.test('loopback addresses', async (t) => {
  const table: Array<[string, boolean]> = [
    ['127.0.0.1', true], ['127.200.3.4', true], ['localhost', true], ['LocalHost', true], ['::1', true], ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true], ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false], ['::', false], ['10.1.2.3', false], ['128.0.0.1', false], ['::2', false], ['::ffff:10.0.0.1', false],
    ['db.example.com', false], ['localhost.example.com', false], ['', false]
  ]
  for (const [host, want] of table) t.equal(isLoopbackHost(host), want, `${JSON.stringify(host)} ${want ? 'is' : 'is not'} loopback`)
})

t.test('protected mode: who may start', async (t) => {
  const base: ProtectedModeInput = { host: '0.0.0.0', hasSecret: false, hasTokens: false, insecure: false }
  const table: Array<[string, Partial<ProtectedModeInput>, RegExp | undefined]> = [
    ['loopback without credentials', { host: '127.0.0.1' }, undefined],
    ['localhost without credentials', { host: 'localhost' }, undefined],
    ['::1 without credentials', { host: '::1' }, undefined],
    ['0.0.0.0 without credentials', {}, /^refusing to listen on 0\.0\.0\.0 without --cluster-secret-file and --tokens-file \(protected mode/],
    ['a LAN address with only a secret', { host: '10.0.0.5', hasSecret: true }, /^refusing to listen on 10\.0\.0\.5 without --tokens-file \(/],
    ['a LAN address with only tokens', { host: '10.0.0.5', hasTokens: true }, /^refusing to listen on 10\.0\.0\.5 without --cluster-secret-file \(/],
    ['a name (could resolve anywhere)', { host: 'node1.internal' }, /^refusing to listen on node1\.internal /],
    ['0.0.0.0 with both', { hasSecret: true, hasTokens: true }, undefined],
    ['0.0.0.0 with --insecure', { insecure: true }, undefined],
    ['loopback data, exposed peer listener', { host: '127.0.0.1', peerHost: '0.0.0.0' }, /^refusing to listen on 0\.0\.0\.0 /],
    ['both loopback', { host: '127.0.0.1', peerHost: '::1' }, undefined]
  ]
  for (const [name, input, want] of table) {
    const got = protectedModeRefusal({ ...base, ...input })
    if (want === undefined) t.equal(got, undefined, `${name}: starts`)
    else t.match(got, want, `${name}: refused`)
  }
})

t.test('the refusal is one line that names the way out', async (t) => {
  const line = protectedModeRefusal({ host: '0.0.0.0', hasSecret: false, hasTokens: false, insecure: false }) ?? ''
  t.notMatch(line, /\n/, 'one line')
  t.match(line, /--insecure/, 'names --insecure')
  t.match(line, /127\.0\.0\.1/, 'and the loopback alternative')
})
