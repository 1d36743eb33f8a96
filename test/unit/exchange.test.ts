import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { exchange } from '../../src/http/exchange'

/**
 * The shared response collector (src/http/exchange.ts) against a plain node:http
 * server on 127.0.0.1: whole bodies however they are chunked, informational responses
 * skipped, and undici's own errors when a response breaks off.
 */

async function listen (server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('exchange collects whole responses', async (t) => {
  const big = Buffer.alloc(300_000, 7)
  big[0] = 1
  big[big.length - 1] = 2
  const server = createServer((req, res) => {
    if (req.url === '/chunks') {
      res.writeHead(200, { etag: '"e1"', 'content-type': 'application/octet-stream' })
      res.write(Buffer.from([1, 2]))
      setTimeout(() => { res.write(Buffer.from([3])); res.end(Buffer.from([4, 5])) }, 20)
    } else if (req.url === '/big') {
      res.end(big)
    } else if (req.url === '/hints') {
      res.writeEarlyHints({ link: '</x>; rel=preload' })
      res.writeHead(201, { etag: '"e2"' })
      res.end('ok')
    } else if (req.url === '/echo') {
      const parts: Buffer[] = []
      req.on('data', (c: Buffer) => parts.push(c))
      req.on('end', () => { res.writeHead(200, { 'x-got': String(req.headers['x-h']) }); res.end(Buffer.concat(parts)) })
    } else if (req.url === '/broken') {
      res.writeHead(200, { 'content-length': '100' })
      res.write('half')
      setTimeout(() => res.socket?.destroy(), 20)
    } else {
      res.writeHead(204)
      res.end()
    }
  })
  const url = await listen(server)
  const pool = new Pool(url, { connections: 2, pipelining: 1 })
  t.teardown(async () => {
    await pool.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  const chunks = await exchange(pool, { path: '/chunks', method: 'GET' })
  t.equal(chunks.status, 200)
  t.same([...chunks.body], [1, 2, 3, 4, 5], 'chunks arriving apart are joined in order')
  t.equal(chunks.headers.etag, '"e1"', 'headers are parsed, lower-case')

  const whole = await exchange(pool, { path: '/big', method: 'GET' })
  t.ok(whole.body.equals(big), 'a body over many socket reads arrives byte for byte')

  const empty = await exchange(pool, { path: '/none', method: 'DELETE' })
  t.equal(empty.status, 204)
  t.equal(empty.body.length, 0, 'no body is an empty buffer')

  const hinted = await exchange(pool, { path: '/hints', method: 'PUT', body: Buffer.from('v') })
  t.equal(hinted.status, 201, 'a 1xx before the answer is skipped')
  t.equal(hinted.headers.etag, '"e2"')
  t.equal(hinted.body.toString(), 'ok')

  const echoed = await exchange(pool, { path: '/echo', method: 'PUT', body: Buffer.from('payload'), headers: Object.freeze({ 'x-h': 'v1' }) })
  t.equal(echoed.body.toString(), 'payload', 'the request body is sent')
  t.equal(echoed.headers['x-got'], 'v1', 'a frozen (shared) header object is sent as is')

  await t.rejects(exchange(pool, { path: '/broken', method: 'GET' }), 'a response cut short rejects')
  const again = await exchange(pool, { path: '/none', method: 'GET' })
  t.equal(again.status, 204, 'and the pool goes on serving')

  await pool.close()
  await t.rejects(exchange(pool, { path: '/none', method: 'GET' }), { code: /^UND_ERR_(CLOSED|DESTROYED)$/ }, 'a closed pool rejects rather than throwing')
})

