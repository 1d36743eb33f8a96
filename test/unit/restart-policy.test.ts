import t from 'tap'
import { decideRestart, isUnexpectedExit, PROCESS_RESTART_POLICY, WORKER_RESTART_POLICY, type RestartPolicyOptions } from '../../src/supervision/restart-policy'

/** Feeds crashes at the given times through decideRestart, returning each decision. */
function run (times: number[], options: RestartPolicyOptions): string[] {
  let history: number[] = []
  return times.map((now) => {
    const r = decideRestart(history, now, options)
    history = r.history
    return r.decision.action === 'restart' ? `restart ${r.decision.delayMs} (${r.decision.recentCrashes})` : `give-up (${r.decision.recentCrashes})`
  })
}

t.test('process policy: half a second, then doubling back-off, then give up', async (t) => {
  const table: Array<{ name: string, times: number[], want: string[] }> = [
    { name: 'one crash', times: [0], want: ['restart 500 (1)'] },
    { name: 'a crash loop', times: [0, 1000, 2000, 4000, 8000, 16000], want: ['restart 500 (1)', 'restart 1000 (2)', 'restart 2000 (3)', 'restart 4000 (4)', 'restart 8000 (5)', 'give-up (6)'] },
    { name: 'crashes far apart are each a first crash', times: [0, 200_000, 400_000], want: ['restart 500 (1)', 'restart 500 (1)', 'restart 500 (1)'] },
    { name: 'old crashes leave the window', times: [0, 1000, 2000, 121_500], want: ['restart 500 (1)', 'restart 1000 (2)', 'restart 2000 (3)', 'restart 1000 (2)'] }
  ]
  for (const row of table) t.same(run(row.times, PROCESS_RESTART_POLICY), row.want, row.name)
})

t.test('worker policy: three free restarts, back-off capped, never gives up', async (t) => {
  const times = Array.from({ length: 12 }, (_, i) => i * 10)
  t.same(run(times, WORKER_RESTART_POLICY), [
    'restart 0 (1)', 'restart 0 (2)', 'restart 0 (3)', 'restart 100 (4)', 'restart 200 (5)', 'restart 400 (6)',
    'restart 800 (7)', 'restart 1600 (8)', 'restart 3200 (9)', 'restart 5000 (10)', 'restart 5000 (11)', 'restart 5000 (12)'
  ])
})

t.test('the delay is capped at maxDelayMs', async (t) => {
  const opts: RestartPolicyOptions = { windowMs: 1e9, freeCrashes: 0, firstDelayMs: 0, baseDelayMs: 1000, maxDelayMs: 3000, giveUpAfter: Infinity }
  t.same(run([0, 1, 2, 3], opts), ['restart 1000 (1)', 'restart 2000 (2)', 'restart 3000 (3)', 'restart 3000 (4)'])
})

t.test('which exits are unexpected', async (t) => {
  const table: Array<[{ code: number | null, signal: string | null }, boolean, string]> = [
    [{ code: 0, signal: null }, false, 'a clean exit after SIGTERM/SIGINT is an operator stop'],
    [{ code: 1, signal: null }, true, 'a start failure'],
    [{ code: 2, signal: null }, true, 'a config error'],
    [{ code: null, signal: 'SIGKILL' }, true, 'killed'],
    [{ code: null, signal: 'SIGSEGV' }, true, 'crashed']
  ]
  for (const [status, want, why] of table) t.equal(isUnexpectedExit(status), want, why)
})

t.test('stress burners: on for onMs, off for offMs, repeating', async (t) => {
  const { burnersOn } = await import('../../scripts/stress-tests')
  const table: Array<[number, boolean]> = [[0, true], [19_999, true], [20_000, false], [29_999, false], [30_000, true], [55_000, false]]
  for (const [ms, want] of table) t.equal(burnersOn(ms, 20_000, 10_000), want, `${ms} ms`)
  t.equal(burnersOn(123_456, 20_000, 0), true, 'no pause: always on')
})
