import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { SupervisedProcess, type SupervisorEvent } from '../../src/local/supervised'
import type { LaunchedProcess } from '../../src/local/child'
import type { RestartPolicyOptions } from '../../src/supervision/restart-policy'

/**
 * A cluster stop cancels every restart before it stops anything: a process whose start
 * fails after the stop began, or whose back-off timer would fire while others are being
 * stopped, is not started again (the Ctrl-C during a back-off in local-supervision).
 */

const FAST: RestartPolicyOptions = { windowMs: 60_000, freeCrashes: 0, firstDelayMs: 0, baseDelayMs: 20, maxDelayMs: 20, giveUpAfter: 100 }

function failingLaunch (delayMs: number): { launch: () => Promise<LaunchedProcess>, attempts: () => number } {
  let n = 0
  return {
    launch: async () => {
      n++
      await sleep(delayMs)
      throw new Error('EEXIST: the data dir is a file')
    },
    attempts: () => n
  }
}

t.test('a pending back-off is cancelled: no further attempt', async (t) => {
  const events: SupervisorEvent[] = []
  const l = failingLaunch(1)
  const sup = new SupervisedProcess({ name: 'g2', role: 'shard', launch: l.launch, policy: FAST, onEvent: (e) => events.push(e) })
  await sup.firstAttempt
  t.equal(sup.state, 'backoff', 'the failed start is backing off')
  sup.cancelRestarts()
  const attempts = l.attempts()
  await sleep(200)
  t.equal(l.attempts(), attempts, 'no attempt after the cancel (the back-off was 20 ms)')
  await sup.stop()
  t.equal(sup.state, 'stopped')
})

t.test('a start in flight that fails after the cancel is not retried nor reported as a crash', async (t) => {
  const events: SupervisorEvent[] = []
  const l = failingLaunch(100)
  const sup = new SupervisedProcess({ name: 'g2', role: 'shard', launch: l.launch, policy: FAST, onEvent: (e) => events.push(e) })
  await sleep(10)
  t.equal(l.attempts(), 1, 'the first start is in flight')
  sup.cancelRestarts()
  t.equal(await sup.firstAttempt.then(() => 'settled', () => 'settled'), 'settled')
  await sleep(200)
  t.equal(l.attempts(), 1, 'never started again')
  t.same(events.filter((e) => e.event === 'crashed'), [], 'no "restarting in" line after the stop began')
  await sup.stop()
})
