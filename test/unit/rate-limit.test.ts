import t from 'tap'
import { RateLimiter } from '../../src/auth/rate-limit'

t.test('per address and per token, one window for all, Retry-After in whole seconds', async (t) => {
  const limiter = new RateLimiter({ perIp: 3, perToken: 2, windowMs: 10_000 })
  t.ok(limiter.enabled)
  const now = 1_000_000
  limiter.chargeToken('a', now)
  limiter.chargeToken('a', now)
  t.throws(() => limiter.chargeToken('a', now + 1), { code: 'rate_limited', status: 429, headers: { 'retry-after': '10' } }, 'the third of token a')
  t.doesNotThrow(() => limiter.chargeToken('b', now + 1), 'token b counts apart')
  for (let i = 0; i < 3; i++) limiter.chargeIp('127.0.0.1', now + 2)
  t.throws(() => limiter.chargeIp('127.0.0.1', now + 9_500), { code: 'rate_limited', headers: { 'retry-after': '1' } }, 'never 0 seconds')
  t.doesNotThrow(() => limiter.chargeIp('::1', now + 9_500), 'another address')
  t.doesNotThrow(() => limiter.chargeToken('a', now + 10_000), 'a new window forgets the old counts')
  t.doesNotThrow(() => limiter.chargeIp('127.0.0.1', now + 10_000))
})

t.test('off by default (0)', async (t) => {
  const limiter = new RateLimiter({ perIp: 0, perToken: 0, windowMs: 1000 })
  t.notOk(limiter.enabled)
  for (let i = 0; i < 1000; i++) limiter.chargeIp('x')
  t.pass('no limit')
})
