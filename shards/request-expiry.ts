import type { KvStore } from '../src/storage/store'
import type { Logger } from '../src/log'

/**
 * Forgets applied request ids past the window (src/storage/applied-requests.ts), on every
 * node of a group alike: each keeps its own floor, raised before anything is forgotten,
 * so an id is refused wherever its record may be gone. Runs in the supervisor, a bounded
 * batch per tick in its own short transaction, so it never holds the write lock long.
 */

export interface RequestExpiryOptions {
  store: KvStore
  log: Logger
  windowMs: number
  maxRecords: number
}

export class RequestExpiry {
  private readonly timer: NodeJS.Timeout

  constructor (private readonly opts: RequestExpiryOptions) {
    // Often enough that the records never exceed the window by more than a tenth of it.
    const every = Math.min(10_000, Math.max(1000, Math.floor(opts.windowMs / 10)))
    this.timer = setInterval(() => this.sweep(), every)
    this.timer.unref()
    this.sweep()
  }

  sweep (): void {
    if (!this.opts.store.isOpen) return
    try {
      const { deleted, floor } = this.opts.store.applied.sweep(Date.now(), this.opts.windowMs, this.opts.maxRecords)
      if (deleted > 0) this.opts.log.debug({ event: 'request-ids-expired', deleted, floor }, 'forgot expired request ids')
    } catch (err) {
      // SQLITE_BUSY under a write burst: the next tick tries again; nothing was forgotten.
      this.opts.log.warn({ event: 'request-id-sweep-failed', err: (err as Error).message }, 'could not sweep expired request ids')
    }
  }

  stop (): void {
    clearInterval(this.timer)
  }
}
