import { SingleBar, Presets } from 'cli-progress'
import type { RebalanceProgress } from '../src/membership/rebalance'
import type { AdminClient } from '../src/client/admin'

/** A progress bar for a rebalance on a terminal, one line per phase change otherwise. */
export function rebalanceReporter (): { update: (p: RebalanceProgress) => void, stop: () => void } {
  const tty = process.stderr.isTTY === true
  const bar = new SingleBar({
    // {percentage}, {total} and {value} are cli-progress's own tokens (the bar runs 0-100): the payload's names differ.
    format: ' {phase} |{bar}| {percentage}% | {scanned}/{rows} rows scanned, {copied} copied, {deleted} purged | {rate} rows/s | ETA {etaText}',
    hideCursor: true,
    stream: process.stderr
  }, Presets.shades_classic)
  let started = false
  let lastPhase = ''
  return {
    update (p) {
      const payload = {
        phase: p.phase.padEnd(9),
        scanned: p.scanned,
        rows: Math.max(p.estimatedRows, p.scanned),
        copied: p.copied,
        deleted: p.deleted,
        rate: p.keysPerSecond,
        etaText: p.etaSeconds === null ? '-' : `${p.etaSeconds}s`
      }
      if (tty) {
        if (!started) { bar.start(100, p.percent, payload); started = true } else bar.update(p.percent, payload)
      } else if (p.phase !== lastPhase) {
        process.stderr.write(`rebalance ${p.id}: ${p.phase} (${p.scanned} scanned, ${p.copied} copied, ${p.deleted} purged)\n`)
      }
      lastPhase = p.phase
    },
    stop () {
      if (started) bar.stop()
    }
  }
}

/** Shows a rebalance until it is done; resolves with its final progress. */
export async function watchRebalance (admin: AdminClient): Promise<RebalanceProgress> {
  const reporter = rebalanceReporter()
  try {
    return await admin.waitForRebalance((p) => reporter.update(p))
  } finally {
    reporter.stop()
  }
}
