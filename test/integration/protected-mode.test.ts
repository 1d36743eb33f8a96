import t from 'tap'
import { join } from 'node:path'
import { sandbox } from '../harness/cluster'
import { launchCoordinator, launchRouter, launchShard, LaunchError, type LaunchedProcess } from '../../src/local/launcher'
import { ensureCredentials } from '../../src/local/credentials'

/**
 * Protected mode on real processes: a router and a shard node asked to listen on
 * 0.0.0.0 without a cluster secret and a tokens file exit 1 with one line saying why;
 * with --insecure, or with both files, they start (on port 0, stopped at once).
 */

type Launch = (extraArgs: string[]) => Promise<LaunchedProcess>

async function refusal (launch: Launch, extraArgs: string[]): Promise<LaunchError> {
  try {
    const p = await launch(extraArgs)
    await p.stop()
  } catch (err) {
    if (err instanceof LaunchError) return err
    throw err
  }
  throw new Error('it started')
}

t.test('router and shard node on 0.0.0.0: refused without credentials, started with --insecure or both files', async (t) => {
  const box = sandbox(t, 'protected-mode')
  const creds = ensureCredentials(join(box.tmp, 'cluster'))
  const started = (p: LaunchedProcess): LaunchedProcess => { box.launched.push(p); return p }
  const kinds: Array<[string, string, Launch]> = [
    ['router', 'shardkv router', async (extraArgs) => started(await launchRouter({ host: '0.0.0.0', port: 0, coordinator: 'http://127.0.0.1:1', extraArgs, readyTimeoutMs: 60_000 }))],
    ['coordinator', 'shardkv coordinator', async (extraArgs) => started(await launchCoordinator({ host: '0.0.0.0', port: 0, dataDir: join(box.tmp, 'coordinator'), extraArgs, readyTimeoutMs: 60_000 }))],
    ['shard node', 'shardkv shard', async (extraArgs) => started(await launchShard({ host: '0.0.0.0', port: 0, workers: 1, dataDir: join(box.tmp, 'g1'), extraArgs, readyTimeoutMs: 60_000 }))]
  ]
  for (const [kind, prefix, launch] of kinds) {
    const bare = await refusal(launch, [])
    t.match(bare.reason, /exited \(code 1, signal null\) before "listening"/, `${kind}: exits 1 without listening`)
    const lines = bare.output.split('\n').filter((l) => l.includes('protected mode'))
    t.equal(lines.length, 1, `${kind}: one line says why`)
    t.match(lines[0], new RegExp(`^${prefix}: refusing to listen on 0\\.0\\.0\\.0 without --cluster-secret-file and --tokens-file \\(protected mode`), `${kind}: ${lines[0] ?? ''}`)
    const half = await refusal(launch, ['--cluster-secret-file', creds.clusterSecretFile])
    t.match(half.output, /without --tokens-file \(protected mode/, `${kind}: a secret alone is not enough`)

    for (const [how, args] of [['--insecure', ['--insecure']], ['both files', ['--cluster-secret-file', creds.clusterSecretFile, '--tokens-file', creds.tokensFile]]] as const) {
      const p = await launch([...args])
      t.match(p.url, /^http:\/\/[^/]+:\d+$/, `${kind} with ${how}: listens (${p.url})`)
      await p.stop()
      t.same(await p.exited, { code: 0, signal: null }, `${kind} with ${how}: stops cleanly`)
    }
  }
})
