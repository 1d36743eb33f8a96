import { join } from 'node:path'
import { readJson, writeJsonAtomic } from '../membership/json-file'
import type { RebalanceState } from '../membership/rebalance'
import { MapFile, PendingMapFile } from '../membership/map-file'
import type { ClusterMap } from '../membership/map'
import type { MapRegistry, MapWatch, RegistryState } from './registry'

const REBALANCE_FILE = 'rebalance.json'

/**
 * The embedded registry: the map and the intent as two files in the coordinator's data
 * dir, each replaced atomically. One coordinator writes them (the process that holds
 * the data dir); a watcher polls the file, for a router on the same machine.
 */
export class FileRegistry implements MapRegistry {
  readonly kind = 'file' as const
  private readonly file: MapFile
  private readonly pending: PendingMapFile
  private readonly rebalanceFile: string

  constructor (dataDir: string, private readonly pollMs = 500) {
    this.file = new MapFile(dataDir)
    this.pending = new PendingMapFile(dataDir)
    this.rebalanceFile = join(dataDir, REBALANCE_FILE)
  }

  get where (): string {
    return this.file.path
  }

  async load (): Promise<RegistryState> {
    return { map: this.file.load(), pending: this.pending.load() }
  }

  async savePending (next: ClusterMap): Promise<void> {
    this.pending.save(next)
  }

  async publish (next: ClusterMap): Promise<void> {
    // Map first: a crash between the two leaves an intent at the published epoch, which
    // resuming recognises as done.
    this.file.save(next)
    this.pending.clear()
  }

  async loadRebalance (): Promise<RebalanceState | undefined> {
    return readJson(this.rebalanceFile) as RebalanceState | undefined
  }

  async saveRebalance (state: RebalanceState): Promise<void> {
    writeJsonAtomic(this.rebalanceFile, state)
  }

  watch (afterEpoch: number, onMap: (map: ClusterMap) => void): MapWatch {
    let seen = afterEpoch
    const check = (): void => {
      let map: ClusterMap | undefined
      try {
        map = this.file.load()
      } catch {
        return // mid-replace or damaged: the next change is read again
      }
      if (map !== undefined && map.epoch > seen) {
        seen = map.epoch
        onMap(map)
      }
    }
    // Reads the file every pollMs rather than fs.watchFile: watchFile takes its first stat
    // asynchronously, so a publish between watch() and that stat was never reported.
    check()
    const timer = setInterval(check, this.pollMs)
    timer.unref()
    return { close: async () => { clearInterval(timer) } }
  }

  async close (): Promise<void> {}
}
