import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { runScript, UsageError } from './cli'

const HELP = `Usage: npm run test:stress -- [options] [test files...]

Runs test files again and again, one at a time, beside CPU-bound processes that it starts
and stops itself (busy for --on-s seconds, idle for --off-s), until --minutes have passed,
to expose tests that fail only on a loaded machine. Prints each run's result and, at the
end, every file's runs and failures; the output of a failed run is kept under --log-dir.
Exits 1 when any run failed. Every burner stops by itself at the deadline even if this
script is killed.

Options:
  --minutes N     stop starting runs after N minutes (default 20)
  --burners N     CPU-bound processes while busy (default: available parallelism, ${availableParallelism()})
  --on-s N        seconds the burners run (default 20)
  --off-s N       seconds they pause (default 10)
  --log-dir DIR   where failed runs' output goes (default ./stress-logs)
  --help          this text
Files default to test/integration/*.test.ts.`

/** Whether the burners run `elapsedMs` into the stress run: on for onMs, off for offMs, repeating. */
export function burnersOn (elapsedMs: number, onMs: number, offMs: number): boolean {
  return offMs === 0 || elapsedMs % (onMs + offMs) < onMs
}

const ROOT = resolve(__dirname, '..', '..')

function positive (name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a number >= 0`)
  return n
}

class Burners {
  private readonly procs = new Set<ChildProcess>()
  constructor (private readonly count: number, private readonly deadline: number) {}

  set (on: boolean): void {
    if (on && this.procs.size === 0) {
      const code = `const end = ${this.deadline}; while (Date.now() < end) {}`
      for (let i = 0; i < this.count; i++) this.procs.add(spawn(process.execPath, ['-e', code], { stdio: 'ignore' }))
    } else if (!on) {
      for (const p of this.procs) p.kill('SIGKILL')
      this.procs.clear()
    }
  }
}

async function runFile (file: string, logDir: string, run: number): Promise<{ ok: boolean, ms: number, log?: string }> {
  const started = Date.now()
  const child = spawn(process.execPath, [join(ROOT, 'node_modules', '.bin', 'tap'), '--reporter=tap', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  const ms = Date.now() - started
  if (code === 0) return { ok: true, ms }
  mkdirSync(logDir, { recursive: true })
  const log = join(logDir, `${run}-${file.replace(/[/\\]/g, '_')}.log`)
  createWriteStream(log).end(out)
  return { ok: false, ms, log }
}

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      minutes: { type: 'string' },
      burners: { type: 'string' },
      'on-s': { type: 'string' },
      'off-s': { type: 'string' },
      'log-dir': { type: 'string', default: 'stress-logs' },
      help: { type: 'boolean', default: false }
    },
    allowPositionals: true,
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  const minutes = positive('minutes', values.minutes, 20)
  const onMs = 1000 * positive('on-s', values['on-s'], 20)
  const offMs = 1000 * positive('off-s', values['off-s'], 10)
  const files = positionals.length > 0
    ? positionals
    : readdirSync(join(ROOT, 'test', 'integration')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join('test', 'integration', f))
  const started = Date.now()
  const deadline = started + minutes * 60_000
  // A test that starts just before the deadline may run past it; the burners never do.
  const burners = new Burners(positive('burners', values.burners, availableParallelism()), deadline)
  const stop = (): void => { burners.set(false); process.exit(130) }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  const tick = setInterval(() => burners.set(Date.now() < deadline && burnersOn(Date.now() - started, onMs, offMs)), 250)
  burners.set(burnersOn(0, onMs, offMs))
  const tally = new Map(files.map((f) => [f, { runs: 0, failures: [] as string[] }]))
  let run = 0
  try {
    while (Date.now() < deadline) {
      for (const file of files) {
        if (Date.now() >= deadline) break
        run++
        const r = await runFile(file, resolve(values['log-dir']), run)
        const t = tally.get(file) as { runs: number, failures: string[] }
        t.runs++
        if (r.log !== undefined) t.failures.push(r.log)
        process.stdout.write(`run ${run}: ${r.ok ? 'ok  ' : 'FAIL'} ${file} (${(r.ms / 1000).toFixed(1)} s)${r.log === undefined ? '' : ` — output in ${r.log}`}\n`)
      }
    }
  } finally {
    clearInterval(tick)
    burners.set(false)
  }
  process.stdout.write('\nfile: runs, failures\n')
  for (const [file, t] of tally) process.stdout.write(`  ${file}: ${t.runs}, ${t.failures.length}\n`)
  return [...tally.values()].some((t) => t.failures.length > 0) ? 1 : 0
}

if (require.main === module) runScript('test:stress', main)
