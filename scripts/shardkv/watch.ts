import type { Command } from 'commander'
import type { RebalanceProgress } from '../../src/membership/rebalance'
import { rebalanceReporter } from '../progress'
import { intOption, withCommonOptions, withConnection, type CommonOptions } from './common'
import { rebalanceLine } from './status'
import { EXIT } from '../cli'

/**
 * `shardkv watch`: follows a running rebalance through the router's `GET /cluster` (a
 * read token is enough) with the scripts' progress bar (scripts/progress.ts: a bar on a
 * terminal, a line per phase otherwise), until it is done and the map has settled.
 */

interface WatchOptions extends CommonOptions { intervalMs: number, timeout: number }

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function runWatch (options: WatchOptions): Promise<number> {
  return await withConnection(options, async (c) => {
    const deadline = Date.now() + options.timeout * 1000
    const reporter = rebalanceReporter()
    let last: RebalanceProgress | null | undefined
    let followed = false
    try {
      for (;;) {
        const view = await c.admin.cluster()
        last = view.rebalance
        const running = last !== undefined && last !== null && last.phase !== 'done'
        if (last !== undefined && last !== null && (running || followed)) reporter.update(last)
        if (running) followed = true
        else if (view.handover === undefined) break
        if (Date.now() > deadline) throw new Error(`the rebalance did not settle within ${options.timeout} s (${rebalanceLine(last)})`)
        await sleep(options.intervalMs)
      }
    } finally {
      reporter.stop()
    }
    const line = followed ? rebalanceLine(last) : `nothing to watch: ${rebalanceLine(last)}`
    process.stdout.write(options.json ? JSON.stringify({ followed, rebalance: last ?? null }) + '\n' : line + '\n')
    return EXIT.ok
  })
}

export function registerWatch (program: Command, done: (code: number) => void): void {
  withCommonOptions(program.command('watch'))
    .description('follow a running rebalance with a progress bar until it has settled (returns at once when none runs)')
    .option('--interval-ms <ms>', 'how often to ask the router', intOption(50, 60_000), 250)
    .option('--timeout <s>', 'give up (exit 1) after this many seconds', intOption(1, 86_400 * 7), 86_400)
    .action(async (options: WatchOptions) => { done(await runWatch(options)) })
}
