import t, { type Test } from 'tap'
import { localSandbox, type LocalSandbox } from '../harness/local-launcher'
import { isAlive, waitFor, waitUntilDead } from '../harness/cluster'
import { etcdAvailable } from '../harness/etcd'
import { readLauncherState } from '../../src/local/nodes-file'

/**
 * `npm start -- --registry etcd --coordinators 2 --routers 2` as an operator runs it:
 * three etcd members, two coordinators (one leads), two routers and the nodes come up
 * under one launcher; both routers serve; a SIGKILLed leading coordinator is replaced as
 * leader by the other, admin calls work through a router afterwards, and the launcher
 * brings the killed one back as a standby; Ctrl-C stops everything, etcd included.
 */

interface Health { leader?: boolean }

async function leads (box: LocalSandbox, url: string): Promise<boolean | undefined> {
  return (await box.http.getJson<Health>(`${url}/healthz`).catch(() => undefined))?.leader
}

/** Writes `n` keys through `writer` and reads each back through `reader`. */
async function writeAndRead (t: Test, box: LocalSandbox, writer: string, reader: string, prefix: string, n: number): Promise<void> {
  let ok = 0
  for (let i = 0; i < n; i++) {
    const put = await box.http.put(writer, `${prefix}-${i}`, `v-${prefix}-${i}`, { 'content-type': 'text/plain' })
    const got = await box.http.get(reader, `${prefix}-${i}`)
    if ((put.status === 200 || put.status === 201) && got.text() === `v-${prefix}-${i}`) ok++
  }
  t.equal(ok, n, `${n} keys written through ${writer} read back through ${reader}`)
}

if (!etcdAvailable()) {
  t.pass('skipped: etcd is not installed (apt-get install etcd-server; .ci/run installs it)')
} else {
  t.test('npm start on etcd: two coordinators and two routers; the leader SIGKILLed; Ctrl-C stops all', async (t) => {
    const box = await localSandbox(t, 'local-etcd', { groups: 2, replicas: 1 })
    const startedAt = Date.now()
    const l = await box.start(['--registry', 'etcd', '--coordinators', '2', '--routers', '2'])
    await l.waitFor(/local cluster is up/, 150_000)
    const lead = await l.waitFor(/Leading coordinator: (coordinator-\d) \((\S+)\)/, 30_000)
    t.comment(`npm start to "up" with etcd: ${Date.now() - startedAt} ms`)
    t.match(l.output(), /etcd-e0 .*etcd-e1 .*etcd-e2 /s, 'the summary lists the etcd members')
    t.match(l.output(), /coordinator-1 .*coordinator-2 .*router-1 .*router-2 .*g1 .*g1-r1 .*g2 .*g2-r1 /s, 'and the coordinators, routers and nodes')
    const [, leaderName, leaderUrl] = lead as unknown as [string, string, string]
    t.equal(leaderName, 'coordinator-1', 'the first coordinator leads a fresh cluster')
    const otherUrl = `http://127.0.0.1:${box.routerPort + 11}`
    t.equal(await leads(box, leaderUrl), true, 'its /healthz says leader: true')
    t.equal(await leads(box, otherUrl), false, 'the other stands by')

    const r1 = box.routerUrl
    const r2 = `http://127.0.0.1:${box.routerPort + 1}`
    await writeAndRead(t, box, r1, r2, 'a', 10)
    await writeAndRead(t, box, r2, r1, 'b', 10)

    const state = readLauncherState(box.dir)
    const leaderPid = state?.nodes[leaderName]?.pid
    if (typeof leaderPid !== 'number') throw new Error(`no pid for ${leaderName} in launcher.json: ${JSON.stringify(state)}`)
    const killedAt = Date.now()
    process.kill(leaderPid, 'SIGKILL')
    await waitFor(async () => await leads(box, otherUrl), 30_000, 'coordinator-2 leads')
    t.comment(`SIGKILL of the leading coordinator to the other leading: ${Date.now() - killedAt} ms`)
    t.pass('coordinator-2 leads after the leader was SIGKILLed')

    const switched = await waitFor(async () => {
      const res = await box.http.request('POST', `${r2}/admin/groups/g1/switchover`, { headers: { 'content-type': 'application/json' }, body: '{}' }).catch(() => undefined)
      return res?.status === 200 ? res : undefined
    }, 30_000, 'a switchover of g1 through router-2')
    t.comment(`switchover through router-2 after the takeover: ${switched.text().slice(0, 200)}`)
    t.pass('an admin call through a router succeeds under the new leader')

    const restarted = await l.waitFor(/coordinator-1 restarted \(pid (\d+)\)/, 60_000)
    const newPid = Number(restarted[1])
    t.not(newPid, leaderPid, `the launcher restarted coordinator-1 (pid ${newPid})`)
    t.equal(await waitFor(async () => await leads(box, leaderUrl) === false ? 'standby' : undefined, 30_000, 'coordinator-1 answers as a standby'), 'standby', 'and it stands by')
    t.equal(await leads(box, otherUrl), true, 'coordinator-2 still leads')
    await writeAndRead(t, box, r1, r2, 'c', 5)

    const pids = box.processes()
    const etcdPids = Object.entries(readLauncherState(box.dir)?.nodes ?? {}).filter(([name]) => name.startsWith('etcd-')).map(([, s]) => s.pid)
    t.equal(etcdPids.filter((p) => typeof p === 'number' && isAlive(p)).length, 3, 'three etcd members run')
    t.equal(await box.interrupt(l, 60_000), 0, 'Ctrl-C stops the launcher cleanly')
    await waitUntilDead(pids, 15_000).catch(() => undefined)
    t.same(pids.filter(isAlive), [], 'every process it had is gone, etcd members included')
    t.same(box.processes(), [], 'and nothing else names its data dir')
  })
}
