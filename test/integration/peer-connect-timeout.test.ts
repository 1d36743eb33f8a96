import t from 'tap'
import { spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { NodeClient } from '../../src/peer/node-client'
import { PEER_CONNECT_TIMEOUT_MS } from '../../src/auth/peer'

/**
 * A peer that never completes a connect is given up on after PEER_CONNECT_TIMEOUT_MS,
 * not undici's 10 s: the coordinator's calls to a node (scan, import, purge, stats, the
 * probe of a new node) and a primary's shipments would otherwise hang that long behind a
 * host that drops packets. The host here is real: a listener on 127.0.0.1 whose process
 * is stopped (SIGSTOP) and whose accept queue is full, so the kernel drops further SYNs.
 */

const LISTENER = "const s = require('net').createServer(() => {}); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'))"

/** Resolves 'connected' or 'error', or 'hanging' when neither happened within `ms`. */
async function tryConnect (port: number, ms: number, sockets: Socket[]): Promise<string> {
  return await new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    sockets.push(s)
    const timer = setTimeout(() => resolve('hanging'), ms)
    s.once('connect', () => { clearTimeout(timer); resolve('connected') })
    s.once('error', () => { clearTimeout(timer); resolve('error') })
  })
}

t.test('a peer connect that hangs fails after the peer connect timeout', async (t) => {
  const child = spawn(process.execPath, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] })
  const sockets: Socket[] = []
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    if (child.pid !== undefined && child.exitCode === null) { process.kill(child.pid, 'SIGCONT'); process.kill(child.pid, 'SIGKILL') }
  })
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
    child.once('exit', () => reject(new Error('the listener exited')))
  })
  process.kill(child.pid as number, 'SIGSTOP')
  // Fill the accept queue (backlog 1 holds two), then check that a connect now hangs.
  for (let i = 0; i < 4; i++) {
    if (await tryConnect(port, 1000, sockets) === 'hanging') break
  }
  t.equal(await tryConnect(port, 1000, sockets), 'hanging', 'a further connect to the stopped listener hangs')

  const url = `http://127.0.0.1:${port}`
  const known = new NodeClient({ timeoutMs: 30_000, mapPeerOf: (u) => u })
  const unknown = new NodeClient({ timeoutMs: 30_000 })
  t.teardown(async () => { await Promise.all([known.close(), unknown.close()]) })
  for (const [what, call] of [['a call to a node in the map (stats)', async () => await known.stats(url)], ['the probe of a node an admin named', async () => await unknown.probe(url)]] as const) {
    const started = Date.now()
    const err = await call().then(() => undefined, (e: Error) => e)
    const took = Date.now() - started
    t.ok(err instanceof Error, `${what}: fails (${err?.message ?? 'it answered'})`)
    // Not before the bound, and far below undici's 10 s default (room for a busy machine's timers).
    t.ok(took >= PEER_CONNECT_TIMEOUT_MS - 100 && took < PEER_CONNECT_TIMEOUT_MS + 4000, `${what}: gave up after ${took} ms (bound ${PEER_CONNECT_TIMEOUT_MS} ms)`)
  }
})
