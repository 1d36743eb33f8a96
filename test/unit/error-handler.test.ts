import t from 'tap'
import pino from 'pino'
import { createApiServer } from '../../src/http/server'
import { MapError } from '../../src/membership/map'
import { RebalanceError } from '../../src/membership/rebalance'
import { ReplicationMapError } from '../../src/replication/map-changes'
import { ShardKvError, ERROR_STATUS } from '../../src/protocol/errors'

/** The one error path: whatever a route throws is answered by the central handler from the catalogue. */

const LIMITS = { headersTimeoutMs: 5000, requestTimeoutMs: 5000, idleTimeoutMs: 5000, maxConnections: 10 }

t.test('domain errors and coded errors are answered with their catalogue code', async (t) => {
  const app = createApiServer({ log: pino({ level: 'silent' }), maxValueBytes: 16, limits: LIMITS })
  const thrown: Record<string, Error> = {
    map: new MapError('bad map'),
    rebalance: new RebalanceError('last_group', 'last one'),
    replication: new ReplicationMapError('stale_term', 'old term'),
    gap: new ShardKvError('gap', 'behind', { position: 7, error: 'ignored', message: 'ignored' }),
    bug: new TypeError('a bug')
  }
  for (const [name, err] of Object.entries(thrown)) app.get(`/${name}`, () => { throw err })
  app.get('/allow', (_request, reply) => {
    reply.header('allow', 'POST')
    throw new ShardKvError('method_not_allowed', 'use POST')
  })
  app.post('/internal', { bodyLimit: 8 }, () => ({ ok: true }))
  t.teardown(() => app.close())

  const expect: Array<[string, number, string]> = [
    ['/map', 400, 'invalid_request'], ['/rebalance', 409, 'last_group'], ['/replication', 409, 'stale_term'],
    ['/gap', 409, 'gap'], ['/bug', 500, 'internal'], ['/allow', 405, 'method_not_allowed'], ['/nowhere', 404, 'no_route']
  ]
  for (const [url, status, code] of expect) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, status, `${url}: ${status}`)
    t.match(res.headers['content-type'], /^application\/json/, `${url}: JSON`)
    t.equal(res.json().error, code, `${url}: ${code}`)
    t.equal(ERROR_STATUS[code as keyof typeof ERROR_STATUS], status, `${url}: the status is the catalogue's`)
  }
  const gap = (await app.inject({ url: '/gap' })).json()
  t.same(gap, { position: 7, error: 'gap', message: 'behind' }, 'details ride along; they cannot override code or message')
  t.equal((await app.inject({ url: '/allow' })).headers.allow, 'POST', 'headers a route set before throwing are kept')
  t.notMatch((await app.inject({ url: '/bug' })).body, /a bug/, 'an unexpected error says nothing of itself')

  const big = await app.inject({ method: 'POST', url: '/internal', payload: '{"much":"too long"}', headers: { 'content-type': 'application/json' } })
  t.equal(big.statusCode, 413)
  t.match(big.json(), { error: 'value_too_large', message: /request body/ }, 'a body past its route limit')
})
