import type { Test } from 'tap'
import { formatStats, LoadGenerator, type HistoryReport } from './history'

/**
 * The end of a history-checked load under faults: stops the load (it may be stopped
 * already), waits for its clients, comments its stats, reads every key back and asserts
 * the two properties every fault test promises: no acknowledged write lost, no stale read.
 * The report is returned for the checks a test adds (`ok`, the keys verified…).
 */
export async function finishLoad (t: Test, load: LoadGenerator, opts: { noFailures?: boolean } = {}): Promise<HistoryReport> {
  load.stop()
  const stats = await load.run()
  t.comment(formatStats(stats))
  // A fault the system should hide from its clients entirely: not one request may fail.
  if (opts.noFailures === true) t.same(stats.failures, [], 'no client request failed')
  const report = await load.verify()
  t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
  t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
  return report
}
