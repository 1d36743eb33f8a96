/**
 * A load's completed-operation count that tests can wait on: `waitFor(n)` resolves once
 * n are done, or once the load has ended (whichever comes first).
 */
export class Progress {
  done = 0
  private ended = false
  private waiters: Array<{ n: number, resolve: () => void }> = []

  /** One more completed; wakes whoever waited for this many. */
  bump (): void {
    this.done++
    if (this.waiters.length === 0) return
    const still: typeof this.waiters = []
    for (const w of this.waiters) {
      if (this.done >= w.n) w.resolve()
      else still.push(w)
    }
    this.waiters = still
  }

  /** The load ended: nobody waits any longer. */
  end (): void {
    this.ended = true
    for (const w of this.waiters.splice(0)) w.resolve()
  }

  async waitFor (n: number): Promise<void> {
    if (this.done >= n || this.ended) return
    await new Promise<void>((resolve) => this.waiters.push({ n, resolve }))
  }
}
