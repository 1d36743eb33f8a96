import t from 'tap'
import {
  errorFromResponse, toKvError, KvError, NotFoundError, PreconditionFailedError, ValueTooLargeError, UnavailableError
} from '../../src/client/errors'
import { ShardKvError } from '../../src/protocol/errors'

t.test('every known code maps to its class, keeping code, status, message and extra fields', async (t) => {
  const nf = errorFromResponse({ status: 404, body: { error: 'not_found', message: 'no value' } })
  t.ok(nf instanceof NotFoundError && nf instanceof KvError && nf instanceof ShardKvError, 'NotFoundError is a KvError and a ShardKvError')
  t.match(nf, { code: 'not_found', status: 404, message: 'no value', name: 'NotFoundError' })

  const pf = errorFromResponse({ status: 412, body: { error: 'precondition_failed', message: 'm', current: '"n1.1.7"' } })
  t.ok(pf instanceof PreconditionFailedError)
  t.equal((pf as PreconditionFailedError).current, '"n1.1.7"', 'current ETag kept')
  const pfAbsent = errorFromResponse({ status: 412, body: { error: 'precondition_failed', message: 'm', current: null } })
  t.equal((pfAbsent as PreconditionFailedError).current, null, 'current is null for an absent key')

  for (const code of ['value_too_large', 'batch_too_large'] as const) {
    const e = errorFromResponse({ status: 413, body: { error: code, message: 'big', maxOps: 3 } })
    t.ok(e instanceof ValueTooLargeError, `${code} is a ValueTooLargeError`)
    t.equal(e.code, code)
    t.equal(e.status, 413)
    t.same(e.details, { maxOps: 3 }, 'extra body fields become details')
  }
  for (const [code, status] of [['unavailable', 503], ['upstream_error', 502], ['upstream_timeout', 504]] as const) {
    const e = errorFromResponse({ status, body: { error: code, message: 'down' } })
    t.ok(e instanceof UnavailableError, `${code} is an UnavailableError`)
    t.match(e, { code, status })
  }
  const ik = errorFromResponse({ status: 400, body: { error: 'invalid_key', message: 'empty' } })
  t.ok(ik instanceof KvError && !(ik instanceof NotFoundError) && !(ik instanceof UnavailableError), 'other codes are plain KvErrors')
  t.match(ik, { code: 'invalid_key', status: 400, name: 'KvError' })
})

t.test('bodies without a known code fall back on the status', async (t) => {
  t.ok(errorFromResponse({ status: 404, body: undefined }) instanceof NotFoundError, '404 without body')
  t.ok(errorFromResponse({ status: 413, body: 'not json' }) instanceof ValueTooLargeError, '413 with text body (e.g. a proxy)')
  const e503 = errorFromResponse({ status: 503, body: { error: 'made_up', message: 'x' } })
  t.ok(e503 instanceof UnavailableError, 'unknown code on a 503 is unavailable')
  t.equal(e503.status, 503)
  t.match(errorFromResponse({ status: 500, body: null }), { code: 'unavailable', status: 500 }, 'a 500 keeps its status')
  t.match(errorFromResponse({ status: 418, body: [] }), { code: 'invalid_request', status: 418 }, 'other 4xx are invalid_request with their status')
  t.match(errorFromResponse({ status: 400, body: {} }), { message: 'HTTP 400 (invalid_request)' }, 'a message is always present')
})

t.test('local ShardKvErrors become client errors', async (t) => {
  const e = toKvError(new ShardKvError('invalid_key', 'the key is empty'))
  t.ok(e instanceof KvError)
  t.match(e, { code: 'invalid_key', status: 400, message: 'the key is empty' })
  const same = new NotFoundError()
  t.equal(toKvError(same), same, 'a KvError is returned as is')
})
