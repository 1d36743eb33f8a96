import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { BenchContext } from './context'
import { findNginx } from './nginx'
import { HELP, parseBenchOptions, UsageError, type BenchOptions } from './options'
import { computeRatios, YCSB_PHASES } from './ratios'
import { formatRatios, formatSkips, formatTable, writeReport, type Environment } from './report'
import { SCENARIO_RUNNERS } from './scenarios'
import { Suite } from './suite'
import { formatYcsbTable } from './ycsb-workloads'
import { formatFootprint, FOOTPRINT_TARGET_MB } from './footprint'

/**
 * `npm run bench`: the suite of issue 5, from one command. Runs the chosen scenarios one
 * after another (each with its own cluster in a temp dir), prints the table and the
 * target ratios, writes bench/results/<timestamp>.json, and stops every process it
 * started and removes the temp dir however the run ends (Ctrl-C included).
 */

function environment (): Environment {
  const env: Environment = {
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    loadAverage: loadavg()[0] ?? 0
  }
  const nginx = findNginx()
  if (nginx !== undefined) {
    const v = spawnSync(nginx, ['-v'], { encoding: 'utf8' })
    env.nginx = (v.stderr ?? '').trim().replace(/^nginx version:\s*/, '')
  }
  return env
}

async function bench (suite: Suite): Promise<number> {
  const { opts } = suite.ctx
  const env = environment()
  const startedAt = new Date().toISOString()
  console.log(`shardkv bench: node ${env.node}, ${env.cores} cores (${env.cpu}), load average ${env.loadAverage.toFixed(1)}`)
  console.log(`  ${opts.connections} connections, ${opts.duration} s per measurement (+${opts.warmup} s warm-up), ${opts.keys} keys of ${opts.valueBytes} bytes, ${opts.workers} worker${opts.workers === 1 ? '' : 's'} per node`)
  console.log(`  scenarios: ${opts.only.join(', ')}`)

  for (const id of opts.only) {
    suite.ctx.signal.throwIfAborted()
    console.log(`\n[${id}]`)
    try {
      await SCENARIO_RUNNERS[id](suite)
    } catch (err) {
      if (suite.ctx.signal.aborted) throw err
      // One broken scenario must not cost the others' numbers.
      suite.skip(id, '', `${(err as Error).message.split('\n')[0] ?? ''}`, true)
    }
  }

  const ratios = computeRatios(suite.measurements)
  console.log('')
  console.log(formatTable(suite.measurements))
  console.log('')
  if (suite.measurements.some((m) => m.scenario === 'ycsb')) {
    console.log(formatYcsbTable(suite.measurements, opts.ycsbSystems, YCSB_PHASES))
    console.log('')
  }
  console.log(formatRatios(ratios))
  for (const f of suite.footprints) console.log(formatFootprint(f))
  const quick = suite.footprints.find((f) => f.name === 'npm start')
  if (quick !== undefined) console.log(`idle npm start cluster, summed VmRSS < ${FOOTPRINT_TARGET_MB} MB (issue 10): ${Math.round(quick.rssKb / 1024)} MB: ${quick.rssKb / 1024 < FOOTPRINT_TARGET_MB ? 'PASS' : 'MISS'}`)
  if (suite.skipped.length > 0) console.log('\n' + formatSkips(suite.skipped))
  const { keep: _keep, ...options } = opts
  const file = writeReport({
    startedAt,
    finishedAt: new Date().toISOString(),
    environment: env,
    options,
    measurements: suite.measurements,
    footprints: suite.footprints,
    ratios,
    skipped: suite.skipped
  })
  console.log(`\nresults: ${file}`)
  if (opts.cpuProf !== undefined) console.log(`CPU profiles (peer and batch routers; ycsb's replicated router and nodes): ${opts.cpuProf}`)

  // Numbers from a run with failed requests would mislead: make the run fail visibly.
  const failures = suite.failures()
  for (const f of failures) console.error(`warning: ${f}`)
  return failures.length === 0 ? 0 : 1
}

async function main (): Promise<number> {
  let opts: BenchOptions | 'help'
  try {
    opts = parseBenchOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`bench: ${err.message}\n(see --help)`)
    return 2
  }
  if (opts === 'help') {
    console.log(HELP)
    return 0
  }
  const keep = opts.keep
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-bench-'))
  const abort = new AbortController()
  const ctx = new BenchContext(opts, tmp, abort.signal)

  let cleaning: Promise<void> | undefined
  const removeTmp = (): void => {
    if (!keep) rmSync(tmp, { recursive: true, force: true })
  }
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      await ctx.stop().catch((err: unknown) => console.error(`bench: stopping processes: ${(err as Error).message}`))
      removeTmp()
      if (keep) console.log(`kept ${tmp} (per scenario: data, logs, nginx config)`)
    })()
    return cleaning
  }
  // Last resort if we exit before cleanup finished (second Ctrl-C): the launcher's and
  // nginx's exit hooks SIGKILL the children; the temp dir goes here.
  process.on('exit', removeTmp)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (abort.signal.aborted) process.exit(130)
      abort.abort()
      console.error(`\nbench: ${sig}: stopping everything...`)
      void cleanup().finally(() => process.exit(130))
    })
  }

  try {
    return await bench(new Suite(ctx))
  } catch (err) {
    if (abort.signal.aborted) return 130
    console.error(`bench: ${(err as Error).message}`)
    const words = ctx.lastWords()
    if (words !== '') console.error(words)
    return 1
  } finally {
    await cleanup()
  }
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error('bench: unexpected error:', err)
  process.exitCode = 1
})
