import t from 'tap'
import { SupervisedProcess, type SupervisorEvent } from '../../src/local/supervised'
import type { ExitStatus, LaunchedProcess } from '../../src/local/child'
import type { RestartPolicyOptions } from '../../src/supervision/restart-policy'
import { deposedRestart } from '../../src/local/etcd-plane'

/**
 * A deposed coordinator exits 3 to campaign again (coordinator/main.ts): its supervisor
 * restarts it every time without counting a crash, so leadership changing hands many
 * times is never given up on as a crash loop, while a real crash still counts.
 */

const STRICT: RestartPolicyOptions = { windowMs: 60_000, freeCrashes: 0, firstDelayMs: 1, baseDelayMs: 1, maxDelayMs: 1, giveUpAfter: 2 }

/** A fake process per launch, ending with the next of `exits`; the last launch keeps running. */
function exitingLaunch (exits: ExitStatus[]): () => Promise<LaunchedProcess> {
  let pid = 100
  return async () => {
    const st = exits.shift()
    pid++
    const exited = st === undefined ? new Promise<ExitStatus>(() => {}) : new Promise<ExitStatus>((resolve) => setImmediate(() => resolve(st)))
    return { name: 'c', role: 'coordinator', url: 'http://127.0.0.1:1', pid, exited, output: () => '', stop: async () => {} } as unknown as LaunchedProcess
  }
}

t.test('exit 3 is restarted without counting; a crash still counts', async (t) => {
  const events: SupervisorEvent[] = []
  const deposed = { code: 3, signal: null }
  const launch = exitingLaunch([deposed, deposed, deposed, deposed, { code: 1, signal: null }, { code: 1, signal: null }])
  const sup = new SupervisedProcess({ name: 'c', role: 'coordinator', launch, policy: STRICT, plannedRestart: deposedRestart, onEvent: (e) => events.push(e) })
  await new Promise<void>((resolve) => { const tick = setInterval(() => { if (sup.state === 'gave-up') { clearInterval(tick); resolve() } }, 5) })
  t.same(events.map((e) => e.event), ['started', 'restarting', 'started', 'restarting', 'started', 'restarting', 'started', 'restarting', 'started', 'crashed', 'started', 'gave-up'],
    'four depositions restarted, then two crashes reach the limit of two')
  t.match(events[1], { event: 'restarting', reason: /lost the leadership/ })
  await sup.stop()
})
