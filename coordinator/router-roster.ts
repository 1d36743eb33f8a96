import type { Logger } from '../src/log'
import type { ServiceDirectory } from './leadership'

/**
 * The routers a leading coordinator knows of, for the dashboard's traffic line: those that
 * follow its map feed (file registry) and those registered in etcd (routers there watch
 * etcd, not the feed), re-read every REFRESH_MS while the term lasts.
 */

const REFRESH_MS = 5000

export class RouterRoster {
  private registered: string[] = []
  private readonly timer: NodeJS.Timeout | undefined

  constructor (private readonly following: () => string[], private readonly directory: ServiceDirectory | undefined, private readonly log: Logger) {
    if (directory === undefined) return
    this.refresh()
    this.timer = setInterval(() => { this.refresh() }, REFRESH_MS)
    this.timer.unref()
  }

  urls (): string[] {
    return [...new Set([...this.following(), ...this.registered])]
  }

  close (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  private refresh (): void {
    this.directory?.routers().then((routers) => { this.registered = routers.map((r) => r.url) }, (err: Error) => {
      // etcd unreachable: keep the last list; the dashboard's router line is informative only.
      this.log.debug({ event: 'router-roster-stale', err: err.message }, 'could not list the registered routers')
    })
  }
}
