import t from 'tap'
import { queryInteger } from '../../src/http/query-integer'

t.test('integer query parameters: absent, in range, and everything else refused', async (t) => {
  t.equal(queryInteger(undefined, 'after', -1), -1, 'absent: the fallback')
  t.equal(queryInteger('-1', 'after', 0), -1)
  t.equal(queryInteger('42', 'wait', 0, 30_000), 42)
  t.equal(queryInteger('30000', 'wait', 0, 30_000), 30_000, 'the maximum itself')
  for (const bad of ['30001', '-2', 'x', '1e3', '1.5', '', ' 1', '9'.repeat(20), ['1', '2']]) {
    t.throws(() => queryInteger(bad, 'wait', 0, 30_000), { code: 'invalid_request', status: 400 }, `refused: ${JSON.stringify(bad)}`)
  }
})
