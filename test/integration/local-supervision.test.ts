import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { localSandbox } from '../harness/local-launcher'
import { isAlive, waitUntilDead } from '../harness/cluster'

/**
 * The local launcher (`npm start`) as a supervisor, with a node that cannot start: g2's
 * data dir is a file. The launcher retries it with back-off, then gives up with a clear
 * message, while the router and g1 keep serving; and a Ctrl-C during a back-off stops
 * everything at once, leaving no process behind.
 */

t.test('a node that crashes on start is retried with back-off, then given up on; the rest serve', async (t) => {
  const box = await localSandbox(t, 'crash-on-start', { groups: 2, replicas: 0 })
  writeFileSync(join(box.dir, 'g2'), 'not a directory\n')
  const l = await box.start()
  await l.waitFor(/local cluster is up/, 90_000)
  t.pass('the cluster came up without g2')
  const retries = await l.waitFor(/g2 did not start: .*; restarting in ([\d.]+) s \(crash (\d+)/, 30_000)
  t.ok(Number(retries[1]) > 0, `a retry is scheduled with a delay (${retries[0]})`)
  const gaveUp = await l.waitFor(/g2 did not start: (.*); giving up after (\d+) crashes/, 90_000)
  t.equal(Number(gaveUp[2]), 6, `given up after the crash-loop limit: ${gaveUp[0]}`)
  const delays = [...l.output().matchAll(/g2 did not start: .*; restarting in ([\d.]+) s/g)].map((m) => Number(m[1]))
  t.same(delays, [0.5, 1, 2, 4, 8], 'with exponential back-off between the attempts')
  t.match(l.output(), /npm run replace-node/, 'the message says what to do')
  t.ok(isAlive(l.pid), 'the launcher keeps running')

  // g1 and the router are unaffected: a key of g1 is written and read back.
  const view = await box.http.getJson<{ groups: Array<{ id: string, nodes: Array<{ health: string }> }> }>(`${box.routerUrl}/cluster`)
  t.equal(view.groups.find((g) => g.id === 'g1')?.nodes[0]?.health, 'up', 'g1 is up')
  let written = 0
  for (let i = 0; i < 40 && written < 5; i++) {
    const res = await box.http.put(box.routerUrl, `k${i}`, `v${i}`, { 'content-type': 'text/plain' })
    if (res.status === 201 || res.status === 200) {
      written++
      t.equal((await box.http.get(box.routerUrl, `k${i}`)).text(), `v${i}`, `k${i} (a key of g1) reads back`)
    }
  }
  t.equal(written, 5, 'keys owned by g1 are written through the router')

  const pids = box.processes()
  t.equal(await box.interrupt(l), 0, 'Ctrl-C stops the launcher cleanly')
  await waitUntilDead(pids, 15_000).catch(() => undefined)
  t.same(box.processes(), [], 'no process of the cluster is left')
})

t.test('Ctrl-C during a restart back-off stops everything', async (t) => {
  const box = await localSandbox(t, 'ctrlc-backoff', { groups: 2, replicas: 0 })
  writeFileSync(join(box.dir, 'g2'), 'not a directory\n')
  const l = await box.start()
  await l.waitFor(/local cluster is up/, 90_000)
  await l.waitFor(/g2 did not start: .*; restarting in [1-9][\d.]* s/, 60_000)
  const pids = box.processes()
  t.ok(pids.length >= 3, `processes running during the back-off: ${pids.join(', ')} (launcher, router, g1 and its worker)`)
  const started = Date.now()
  t.equal(await box.interrupt(l), 0, 'SIGINT during the back-off: the launcher exits 0')
  t.ok(Date.now() - started < 20_000, `without waiting out the back-off (${Date.now() - started} ms)`)
  await waitUntilDead(pids, 15_000).catch(() => undefined)
  t.same(pids.filter(isAlive), [], 'every PID it had is gone')
  t.same(box.processes(), [], 'and nothing else names its data dir')
  t.notMatch(l.output().split('SIGINT')[1] ?? '', /g2 restarted|g2 did not start/, 'no restart after the stop')
})
