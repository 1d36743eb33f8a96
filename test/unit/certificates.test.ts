import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decideLocalTls, ensureTls, existingTls, tlsPaths } from '../../src/local/certificates'

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)

function tempDir (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-certs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('ensureTls: a CA and a 127.0.0.1/localhost certificate for both ends, private, made once', async (t) => {
  const dir = tempDir(t)
  t.equal(existingTls(dir), undefined, 'none before')
  const made = ensureTls(dir)
  t.equal(made.created, true, 'made on the first call')
  t.equal(mode(made.dir), '700', 'tls/ is 0700')
  t.same([mode(made.caKey), mode(made.key)], ['600', '600'], 'keys are 0600')
  const text = execFileSync('openssl', ['x509', '-in', made.cert, '-noout', '-text'], { encoding: 'utf8' })
  t.match(text, /IP Address:127\.0\.0\.1, DNS:localhost/, 'names 127.0.0.1 and localhost')
  t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/, 'good for server and client')
  t.match(execFileSync('openssl', ['verify', '-CAfile', made.ca, made.cert], { encoding: 'utf8' }), /OK/, 'chains to the CA')
  const before = [made.ca, made.caKey, made.cert, made.key].map((p) => readFileSync(p, 'utf8'))
  t.equal(ensureTls(dir).created, false, 'a second call makes nothing')
  t.same([made.ca, made.caKey, made.cert, made.key].map((p) => readFileSync(p, 'utf8')), before, 'and overwrites nothing')
})

t.test('ensureTls without openssl: one line that says what to install', async (t) => {
  const dir = tempDir(t)
  const path = process.env.PATH
  process.env.PATH = join(dir, 'nothing-here')
  t.teardown(() => { process.env.PATH = path })
  t.throws(() => ensureTls(dir), { name: 'OpensslMissingError', message: /needs the openssl command/ })
  t.equal(existingTls(dir), undefined, 'no partial set is left as if whole')
})

t.test('decideLocalTls: --tls on a first start, kept by the nodes file, no switch in place', async (t) => {
  const dir = tempDir(t)
  t.equal(decideLocalTls(dir, false, { exists: false, tls: false }), undefined, 'no flag, no record: plain')
  t.throws(() => decideLocalTls(dir, true, { exists: true, tls: false }), /started without --tls/, 'a plain cluster is not switched')
  t.equal(decideLocalTls(dir, true, { exists: false, tls: false })?.ca, tlsPaths(dir).ca, 'the flag on a first start')
  t.equal(decideLocalTls(dir, false, { exists: true, tls: true })?.created, false, 'the record on a later start, the same files')
})
