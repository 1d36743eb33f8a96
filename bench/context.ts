import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { stopAll, type LaunchedProcess } from '../src/local/launcher'
import type { BenchOptions } from './options'

/**
 * What a running suite owns: its temp dir, every process it started (so they are stopped
 * by pid however the run ends) and the abort signal of Ctrl-C. Scenarios take one of
 * these and give back everything they started before they return.
 */

export interface Stoppable {
  name: string
  pid: number
  stop(timeoutMs?: number): Promise<void>
}

export class BenchContext {
  /** Shardkv processes, stopped in the order stopAll wants (routers first). */
  private readonly launched = new Set<LaunchedProcess>()
  /** Anything else started (nginx). */
  private readonly others = new Set<Stoppable>()
  private scenarioCount = 0

  constructor (
    readonly opts: BenchOptions,
    readonly tmp: string,
    readonly signal: AbortSignal
  ) {}

  /** A fresh directory under the temp dir for one scenario's cluster. */
  scenarioDir (name: string): string {
    const dir = join(this.tmp, `${String(++this.scenarioCount).padStart(2, '0')}-${name}`)
    mkdirSync(dir, { recursive: true })
    return dir
  }

  track (p: LaunchedProcess): void {
    this.launched.add(p)
  }

  trackOther (s: Stoppable): void {
    this.others.add(s)
  }

  /** Stops the given processes (all of them when none are given) and forgets them. */
  async stop (which?: { launched?: readonly LaunchedProcess[], others?: readonly Stoppable[] }, timeoutMs = 5000): Promise<void> {
    const launched = which?.launched ?? [...this.launched]
    const others = which?.others ?? [...this.others]
    const results = await Promise.allSettled([
      // nginx first: it fronts the shard nodes.
      Promise.allSettled(others.map((o) => o.stop(timeoutMs))).then(() => stopAll(launched, timeoutMs))
    ])
    for (const p of launched) this.launched.delete(p)
    for (const o of others) this.others.delete(o)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  /** The last output lines of every process still tracked, for explaining a failure. */
  lastWords (lines = 10): string {
    const parts: string[] = []
    for (const p of this.launched) {
      const tail = p.output().split('\n').slice(-lines).join('\n')
      if (tail.trim() !== '') parts.push(`--- ${p.name} (pid ${p.pid}, last lines) ---\n${tail}`)
    }
    return parts.join('\n')
  }
}
