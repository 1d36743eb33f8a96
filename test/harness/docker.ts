import { execFile, type ExecFileOptions } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Test } from 'tap'
import { isPortFree } from '../../src/local/ports'

/**
 * Docker for the tests (and for anyone who wants the image here): make sure the engine
 * answers, build the base image and the shardkv image once per content of their inputs, and
 * run containers that are all removed — containers by id, volumes by name — when the test
 * ends, passed or failed. Containers use host networking and listen on 127.0.0.1 only.
 *
 * Users build the same way: `deploy/base-image/build.sh && docker build --network host -t shardkv .`
 * (docs/deployment.md); the tag here carries a hash of the inputs so a test reuses an image built
 * from the same sources and rebuilds when one of them changed.
 */

// tap runs this file from test/harness (TypeScript), so the checkout is two levels up.
export const ROOT = join(__dirname, '..', '..')
const BASE_SCRIPT = join(ROOT, 'deploy', 'base-image', 'build.sh')
/** What the Dockerfile's build stage reads (the rest of the context is in .dockerignore). */
const IMAGE_INPUTS = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'bin', 'src', 'shards', 'router', 'coordinator', 'scripts']

export interface RunResult { stdout: string, stderr: string }

/** Runs a command, rejecting with its last output lines when it fails or outlives timeoutMs. */
export async function run (cmd: string, args: string[], timeoutMs: number, opts: ExecFileOptions = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', ...opts }, (err, stdout, stderr) => {
      if (err === null) { resolve({ stdout: String(stdout), stderr: String(stderr) }); return }
      const tail = `${String(stdout)}\n${String(stderr)}`.trim().split('\n').slice(-25).join('\n')
      reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} failed (${err.killed ? `killed after ${timeoutMs} ms` : `exit ${String(err.code)}`}):\n${tail}`))
    })
  })
}

export async function docker (args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run('docker', args, timeoutMs)).stdout.trim()
}

/** Why docker cannot be used here, or undefined when the engine answers. */
async function dockerUnusable (): Promise<string | undefined> {
  try {
    await docker(['version', '--format', '{{.Server.Version}}'], 20_000)
    return undefined
  } catch (err) {
    return `the docker engine does not answer (.ci/run installs docker.io and starts dockerd as root): ${(err as Error).message.split('\n').slice(0, 3).join(' ')}`
  }
}

/**
 * True when a test must end for want of a usable docker, after saying so: in CI as a failure
 * (.ci/run installs and starts docker, so a skip there would hide a broken setup), elsewhere as a skip.
 */
export async function withoutDocker (t: Test): Promise<boolean> {
  const unusable = await dockerUnusable()
  if (unusable === undefined) return false
  if (process.env.CI !== undefined && process.env.CI !== '') t.fail(unusable)
  else void t.skip(unusable, () => {})
  return true
}

/** sha256 over the names and contents of every file under `paths` (relative to ROOT), sorted. */
export function inputsHash (paths: readonly string[]): string {
  const h = createHash('sha256')
  const visit = (abs: string): void => {
    if (!existsSync(abs)) return
    if (statSync(abs).isDirectory()) {
      for (const name of readdirSync(abs).sort()) visit(join(abs, name))
      return
    }
    h.update(relative(ROOT, abs)).update('\0').update(readFileSync(abs)).update('\0')
  }
  for (const p of paths) visit(join(ROOT, p))
  return h.digest('hex').slice(0, 16)
}

export interface BuiltImages { image: string, baseMs: number, imageMs: number, cached: boolean }

/**
 * The etcd image of deploy/compose.yaml (deploy/etcd/Dockerfile: Debian's etcd-server on the same
 * base), tagged shardkv-etcd:test-<hash of the base's id and that Dockerfile>: built only when no
 * image has that tag (Docker's layer cache makes it quick when shardkv-etcd:bookworm was built from
 * the same base). Call after ensureImages, which makes the base.
 */
export async function ensureEtcdImage (log: (line: string) => void): Promise<{ image: string, ms: number, cached: boolean }> {
  const started = Date.now()
  const baseId = await docker(['image', 'inspect', '--format', '{{.Id}}', 'shardkv-base:bookworm'])
  const image = `shardkv-etcd:test-${createHash('sha256').update(baseId).update(inputsHash(['deploy/etcd'])).digest('hex').slice(0, 16)}`
  const exists = await docker(['image', 'inspect', '--format', '{{.Id}}', image]).then(() => true, () => false)
  if (!exists) {
    log(`building ${image}`)
    await run('docker', ['build', '--network', 'host', '-t', image, join(ROOT, 'deploy', 'etcd')], 15 * 60_000)
    const stale = (await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', 'shardkv-etcd'])).split('\n')
      .filter((tag) => tag.startsWith('shardkv-etcd:test-') && tag !== image)
    for (const tag of stale) await docker(['rmi', tag]).catch(() => {})
  }
  return { image, ms: Date.now() - started, cached: exists }
}

/**
 * The base image (deploy/base-image/build.sh caches it by its own inputs), then the shardkv
 * image tagged shardkv:test-<hash of the base's id and the image's inputs>: built only when no
 * image has that tag.
 * Older test tags are removed after a build, so repeated runs do not fill the disk.
 */
export async function ensureImages (log: (line: string) => void): Promise<BuiltImages> {
  let started = Date.now()
  const base = await run('bash', [BASE_SCRIPT], 15 * 60_000)
  log(base.stdout.trim().split('\n').slice(-1)[0] ?? '')
  const baseMs = Date.now() - started
  // The base's id too: a new base (another Node binary) must give a new image.
  const baseId = await docker(['image', 'inspect', '--format', '{{.Id}}', 'shardkv-base:bookworm'])
  const image = `shardkv:test-${createHash('sha256').update(baseId).update(inputsHash(IMAGE_INPUTS)).digest('hex').slice(0, 16)}`
  started = Date.now()
  const exists = await docker(['image', 'inspect', '--format', '{{.Id}}', image]).then(() => true, () => false)
  if (!exists) {
    log(`building ${image}`)
    await run('docker', ['build', '--network', 'host', '-t', image, ROOT], 20 * 60_000)
    const stale = (await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', 'shardkv'])).split('\n')
      .filter((tag) => tag.startsWith('shardkv:test-') && tag !== image)
    for (const tag of stale) await docker(['rmi', tag]).catch(() => {})
    // Build stages of earlier builds (untagged, labelled in the Dockerfile); the last hour's stay as cache.
    await docker(['image', 'prune', '-f', '--filter', 'label=shardkv.stage=build', '--filter', 'until=1h']).catch(() => {})
  }
  return { image, baseMs, imageMs: Date.now() - started, cached: exists }
}

/** A free TCP port on 127.0.0.1 below the kernel's ephemeral range (which port-0 listeners and outgoing connections take) and above port-block.ts's blocks. */
export async function freePort (taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 30_000 + Math.floor(Math.random() * 2_700)
    if (taken.has(port) || !(await isPortFree('127.0.0.1', port))) continue
    taken.add(port)
    return port
  }
  throw new Error('no free port on 127.0.0.1 in 30000-32699 after 200 tries')
}

export interface ContainerSpec {
  /** Short name; the container is named shardkv-test-<run>-<name>. */
  name: string
  /** The image's command: the role and its arguments. */
  args: string[]
  /** A named volume mounted at /data (created on first use, removed at teardown). */
  volume?: string
  /** Host files mounted read-only: host path -> container path. */
  files?: Record<string, string>
  /** Another image than the test's shardkv image (the etcd image). */
  image?: string
  /** Environment variables of the container. */
  env?: Record<string, string>
}

/**
 * The containers and volumes of one test. Everything it creates is named with a random run
 * id and removed in the test's teardown, even when the test fails or times out.
 */
export class Containers {
  readonly run = randomBytes(4).toString('hex')
  private readonly ids = new Map<string, string>()
  private readonly volumes = new Set<string>()

  constructor (private readonly t: Test, readonly image: string) {
    t.teardown(async () => { await this.removeAll() })
  }

  volumeName (name: string): string {
    return `shardkv-test-${this.run}-${name}`
  }

  async start (spec: ContainerSpec): Promise<string> {
    const args = ['run', '-d', '--name', `shardkv-test-${this.run}-${spec.name}`, '--network', 'host',
      '--label', `shardkv.test.run=${this.run}`]
    if (spec.volume !== undefined) {
      const volume = this.volumeName(spec.volume)
      if (!this.volumes.has(volume)) {
        await docker(['volume', 'create', '--label', `shardkv.test.run=${this.run}`, volume])
        this.volumes.add(volume)
      }
      args.push('-v', `${volume}:/data`)
    }
    for (const [host, inside] of Object.entries(spec.files ?? {})) args.push('-v', `${host}:${inside}:ro`)
    for (const [k, v] of Object.entries(spec.env ?? {})) args.push('-e', `${k}=${v}`)
    const id = await docker([...args, spec.image ?? this.image, ...spec.args], 60_000)
    this.ids.set(spec.name, id)
    return id
  }

  id (name: string): string {
    const id = this.ids.get(name)
    if (id === undefined) throw new Error(`no container ${name} in this test`)
    return id
  }

  /** SIGKILL, as a crash: the container stays (with its volume) to be started again. */
  async kill (name: string): Promise<void> {
    await docker(['kill', '--signal', 'KILL', this.id(name)])
    await docker(['wait', this.id(name)], 30_000)
  }

  /** Starts a stopped container again: same command, same volume. */
  async restart (name: string): Promise<void> {
    await docker(['start', this.id(name)])
  }

  /** Runs a command in a running container (as its user), with extra environment variables. */
  async exec (name: string, command: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<string> {
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`])
    return await docker(['exec', ...envArgs, this.id(name), ...command], timeoutMs)
  }

  async health (name: string): Promise<string> {
    return await docker(['inspect', '--format', '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}', this.id(name)])
  }

  async logs (name: string, lines = 40): Promise<string> {
    const r = await run('docker', ['logs', '--tail', String(lines), this.id(name)], 20_000).catch((err: Error) => ({ stdout: '', stderr: err.message }))
    return `${r.stdout}${r.stderr}`
  }

  /** Every container's last lines, for a failing test's output. */
  async allLogs (lines = 40): Promise<string> {
    const parts: string[] = []
    for (const name of this.ids.keys()) parts.push(`--- ${name} ---\n${await this.logs(name, lines)}`)
    return parts.join('\n')
  }

  private async removeAll (): Promise<void> {
    // By id and by the run's label, so a container whose `run` answer was lost goes too.
    const labelled = await docker(['ps', '-aq', '--no-trunc', '--filter', `label=shardkv.test.run=${this.run}`]).catch(() => '')
    const ids = new Set([...this.ids.values(), ...labelled.split('\n').filter((x) => x !== '')])
    if (ids.size > 0) await docker(['rm', '-f', '-v', ...ids], 120_000).catch((err: Error) => { this.t.comment(`cleanup: ${err.message}`) })
    for (const v of this.volumes) await docker(['volume', 'rm', '-f', v]).catch((err: Error) => { this.t.comment(`cleanup: ${err.message}`) })
  }
}
