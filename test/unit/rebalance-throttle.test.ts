import t from 'tap'
import { MoveBudget, rowBytes, throttleDelayMs } from '../../src/membership/rebalance-throttle'

const MIB = 1024 * 1024

t.test('the byte rate bounds a batch of large rows, the row rate one of tiny rows', async (t) => {
  const cases: Array<[string, { bytesPerSecond: number, rowsPerSecond: number }, { rows: number, bytes: number }, number, number]> = [
    ['unthrottled', { bytesPerSecond: 0, rowsPerSecond: 0 }, { rows: 500, bytes: 50 * MIB }, 0, 0],
    ['1 MiB at 8 MiB/s takes 125 ms; 25 spent', { bytesPerSecond: 8 * MIB, rowsPerSecond: 0 }, { rows: 10, bytes: MIB }, 25, 100],
    ['already slower than the rate: no wait', { bytesPerSecond: 8 * MIB, rowsPerSecond: 0 }, { rows: 10, bytes: MIB }, 500, 0],
    ['tiny rows: the row rate binds', { bytesPerSecond: 8 * MIB, rowsPerSecond: 1000 }, { rows: 500, bytes: 5000 }, 0, 500],
    ['large rows: the byte rate binds', { bytesPerSecond: 8 * MIB, rowsPerSecond: 1000 }, { rows: 8, bytes: 8 * MIB }, 0, 1000],
    ['an empty batch never waits', { bytesPerSecond: 1, rowsPerSecond: 1 }, { rows: 0, bytes: 0 }, 0, 0]
  ]
  for (const [what, rate, batch, spent, want] of cases) t.equal(throttleDelayMs(rate, batch, spent), want, what)
})

t.test('a batch weighs its keys and its values as stored, not as base64', async (t) => {
  const value = Buffer.alloc(300, 7).toString('base64')
  t.equal(rowBytes([{ key: 'k1', value, contentType: 'application/octet-stream', version: '1' }, { key: 'é', value: '', contentType: 'text/plain', version: '2' }]), 2 + 300 + 2)
})

t.test('a rebalance\'s copy loops share one budget; idle time earns at most a second of credit', async (t) => {
  const rate = { bytesPerSecond: 1000, rowsPerSecond: 0 }
  const budget = new MoveBudget(rate, 0)
  t.equal(budget.spend({ rows: 1, bytes: 500 }, 0), 500, 'half a second\'s bytes at once: wait the half second')
  t.equal(budget.spend({ rows: 1, bytes: 500 }, 0), 1000, 'a second loop\'s batch at the same moment waits for both')
  t.equal(budget.spend({ rows: 1, bytes: 0 }, 1000), 0, 'on pace: no wait')
  // Ten seconds idle: only one second of credit, so 2 s of bytes waits 1 s.
  t.equal(budget.spend({ rows: 1, bytes: 2000 }, 11_000), 1000, 'credit for idle time is capped')
  t.equal(new MoveBudget({ bytesPerSecond: 0, rowsPerSecond: 0 }, 0).spend({ rows: 1e6, bytes: 1e9 }, 0), 0, 'unthrottled')
  const rows = new MoveBudget({ bytesPerSecond: 0, rowsPerSecond: 100 }, 0)
  t.equal(rows.spend({ rows: 50, bytes: 0 }, 100), 400, 'the row rate paces the same way')
})
