import type { Test } from 'tap'
import { formatStats, LoadGenerator, type HistoryReport } from './history'

/**
 * The end of a history-checked load under faults: stops the load (it may be stopped
 * already), waits for its clients, comments its stats, reads every key back and asserts
 * the two properties every fault test promises: no acknowledged write lost, no stale read.
 * The report is returned for the checks a test adds (`ok`, the keys verified…).
 */
export async function finishLoad (t: Test, load: LoadGenerator): Promise<HistoryReport> {
  load.stop()
  t.comment(formatStats(await load.run()))
  const report = await load.verify()
  t.equal(report.lostWrites.length, 0, `no acknowledged write lost\n${report.text}`)
  t.equal(report.staleReads.length, 0, `no stale read\n${report.text}`)
  return report
}
