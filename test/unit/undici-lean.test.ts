import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import * as undici from 'undici'
import * as lean from '../../src/http/undici'

/** undici's typings leave `path` out of request()'s options, though its index reads it. */
type WithPath = NonNullable<Parameters<typeof lean.request>[1]>

/**
 * src/http/undici.ts loads undici's dispatchers and `request` without its index (which
 * also makes Node load its own bundled undici). What it exports must be undici's own, and
 * behave as undici's index does; and a process that loads it must not load Node's copy.
 */

t.test('the dispatchers and the connector are undici\'s own classes', async (t) => {
  t.equal(lean.Agent, undici.Agent)
  t.equal(lean.Pool, undici.Pool)
  t.equal(lean.Client, undici.Client)
  t.equal(lean.buildConnector, undici.buildConnector)
  t.type(new lean.Agent().request, 'function', 'dispatchers have the request API')
})

t.test('request() sends as undici\'s does: the URL or options.path, the method from the body, the dispatcher given', async (t) => {
  const seen: Array<{ method?: string, url?: string, body: string }> = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, body })
      res.end(JSON.stringify({ ok: true }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const agent = new lean.Agent()
  t.teardown(async () => {
    await agent.close()
    await new Promise((resolve) => server.close(resolve))
  })
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const get = await lean.request(`${base}/kv/a?x=1`, { dispatcher: agent })
  t.equal(get.statusCode, 200)
  t.same(await get.body.json(), { ok: true })
  await (await lean.request(new URL(`${base}/kv/b`), { dispatcher: agent, body: 'v' })).body.dump()
  await (await lean.request(base, { dispatcher: agent, path: 'kv/c', method: 'DELETE' } as WithPath)).body.dump()
  t.same(seen, [
    { method: 'GET', url: '/kv/a?x=1', body: '' },
    { method: 'PUT', url: '/kv/b', body: 'v' },
    { method: 'DELETE', url: '/kv/c', body: '' }
  ])
  await t.rejects(lean.request('ftp://127.0.0.1/x', { dispatcher: agent }), { code: 'UND_ERR_INVALID_ARG' }, 'a URL undici refuses is refused the same way')
  await t.rejects(lean.request(base, { dispatcher: agent, path: 5 } as unknown as WithPath), { code: 'UND_ERR_INVALID_ARG' })
})

t.test('a process that loads it (and makes a request) does not load Node\'s bundled undici', async (t) => {
  const module = resolve(__dirname, '..', '..', 'dist', 'src', 'http', 'undici.js')
  const script = `
    const { Agent, request } = require(${JSON.stringify(module)})
    const agent = new Agent()
    request('http://127.0.0.1:9/', { dispatcher: agent }).catch(() => undefined).finally(async () => {
      await agent.close()
      process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('deps/undici'))))
    })`
  const loaded = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })) as string[]
  t.same(loaded, [], 'internal/deps/undici stays unloaded')
})
