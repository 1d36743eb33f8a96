import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { launchCoordinator, launchRouter, LaunchError, stopAll, type LaunchedProcess } from '../../src/local/launcher'
import { ensureCredentials } from '../../src/local/credentials'
import { spawnService } from '../../src/local/child'
import { SupervisedProcess, type SupervisorEvent } from '../../src/local/supervised'
import { HEALTH_PATH } from '../../src/protocol/wire'
import { HttpClient } from '../harness/http'
import { waitFor } from '../harness/cluster-nodes'

/**
 * npm start runs the router and the coordinator as worker threads of its launcher
 * (src/local/runner.ts). Here the test process is the launcher: the parts serve from
 * threads of it, take SIGHUP and SIGTERM as messages, a SIGKILL ends only the thread
 * (and the supervisor starts it again on the same port), and a part that cannot start
 * reports why without taking the host down.
 */

const FAST = { windowMs: 60_000, freeCrashes: 0, firstDelayMs: 0, baseDelayMs: 50, maxDelayMs: 50, giveUpAfter: 10 }

t.test('the router and the coordinator as threads of this process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-threads-'))
  const creds = ensureCredentials(dir)
  const credentials = { clusterSecretFile: creds.clusterSecretFile, tokensFile: creds.tokensFile }
  const started: LaunchedProcess[] = []
  const sups: SupervisedProcess[] = []
  const http = new HttpClient()
  t.teardown(async () => {
    for (const s of sups) await s.stop().catch(() => undefined)
    await stopAll(started).catch(() => undefined)
    await http.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const coordinator = await launchCoordinator({ dataDir: join(dir, 'coordinator'), credentials, thread: true, logFile: join(dir, 'coordinator.log') })
  started.push(coordinator)
  t.equal(coordinator.pid, process.pid, 'the coordinator runs in this process')
  t.type(coordinator.threadId, 'number', 'as a thread')

  const events: SupervisorEvent[] = []
  let routerPort = 0
  const sup = new SupervisedProcess({
    name: 'router',
    role: 'router',
    policy: FAST,
    onEvent: (e) => events.push(e),
    launch: async () => {
      const p = await launchRouter({ port: routerPort, coordinator: coordinator.url, credentials, thread: true })
      routerPort = Number(new URL(p.url).port)
      return p
    }
  })
  sups.push(sup)
  t.ok(await sup.firstAttempt, 'the router thread started under a supervisor')
  const router = sup.current as LaunchedProcess
  t.not(router.threadId, coordinator.threadId, 'in a thread of its own')
  for (const p of [coordinator, router]) t.equal((await http.request('GET', `${p.url}${HEALTH_PATH}`)).status, 200, `${p.name} serves ${HEALTH_PATH}`)

  const reloaded = router.waitForEvent('tokens-reloaded', 20_000)
  router.signal('SIGHUP')
  t.match(await reloaded, { path: creds.tokensFile }, 'SIGHUP, posted to the thread, re-reads the tokens file')

  router.signal('SIGKILL')
  t.match(await router.exited, { code: null, signal: 'SIGKILL' }, 'SIGKILL terminates the thread alone')
  t.equal((await http.request('GET', `${coordinator.url}${HEALTH_PATH}`)).status, 200, 'the coordinator thread keeps serving')
  await waitFor(() => sup.current !== undefined && sup.current !== router && sup.state === 'running', 30_000, 'the supervisor to start the router again')
  t.match(events.map((e) => e.event), ['started', 'crashed', 'started'], 'reported as a crash, then started again')
  t.equal(sup.current?.url, router.url, 'on the same port')
  t.equal((await http.request('GET', `${router.url}${HEALTH_PATH}`)).status, 200, 'and serving')

  const stopped = coordinator.waitForEvent('stopped', 20_000)
  await coordinator.stop()
  t.match(await stopped, { event: 'stopped' }, 'SIGTERM, posted to the thread, drains the coordinator')
  t.match(await coordinator.exited, { code: 0, signal: null }, 'which ends its thread with code 0')
})

t.test('a part that cannot start ends its thread, not this process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shardkv-threads-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const err = await launchCoordinator({ dataDir: dir, thread: true, extraArgs: ['--no-such-flag'] }).then(() => undefined, (e: unknown) => e)
  t.type(err, LaunchError, 'the launch fails')
  t.match((err as LaunchError).message, /exited \(code 2, signal null\) before "listening" event[\s\S]*--no-such-flag/, 'with its exit code and its usage error')

  // A script that throws before it could install a handler: the Worker's error event, not an exception here.
  const missing = join(dir, 'no-such-part.js')
  const lost = await spawnService({ name: 'lost', role: 'router', script: missing, args: [], thread: {}, readyTimeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e)
  t.type(lost, LaunchError, 'a thread whose script cannot load fails its launch')
  t.match((lost as LaunchError).message, /exited \(code 1, signal null\)[\s\S]*Cannot find module/, 'with the load error as its last words')
  t.equal(process.exitCode ?? 0, 0, 'and this process carries on')
})
