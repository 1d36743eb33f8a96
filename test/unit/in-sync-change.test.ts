import t from 'tap'
import { parseInSyncChange } from '../../src/protocol/in-sync'
import { ShardKvError } from '../../src/protocol/errors'

t.test('an in-sync change is read whole or refused with 400', async (t) => {
  const good = { group: 'g1', url: 'http://127.0.0.1:7101', inSync: true, term: 2, sender: 'http://127.0.0.1:7001' }
  t.same(parseInSyncChange(good), good)
  const { sender: _, ...withoutSender } = good
  t.same(parseInSyncChange(withoutSender), withoutSender, 'sender is optional')
  const bad: Array<Record<string, unknown>> = [
    {}, { ...good, group: '' }, { ...good, group: 1 }, { ...good, url: null }, { ...good, inSync: 'true' },
    { ...good, term: 0 }, { ...good, term: 1.5 }, { ...good, term: '2' }, { ...good, sender: 7 }
  ]
  for (const body of bad) {
    let code: string | undefined
    try {
      parseInSyncChange(body)
    } catch (err) {
      code = err instanceof ShardKvError ? err.code : 'not a ShardKvError'
    }
    t.equal(code, 'invalid_request', JSON.stringify(body))
  }
})
