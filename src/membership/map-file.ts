import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { validateMap, type ClusterMap } from './map'
import { readJson, writeJsonAtomic } from './json-file'

export const MAP_FILE = 'cluster.json'

/** The coordinator's map on disk (atomic replace; see json-file.ts). */
export class MapFile {
  readonly path: string

  constructor (dataDir: string) {
    this.path = join(dataDir, MAP_FILE)
  }

  load (): ClusterMap | undefined {
    const raw = readJson(this.path)
    return raw === undefined ? undefined : validateMap(raw)
  }

  save (map: ClusterMap): void {
    writeJsonAtomic(this.path, map)
  }
}

export const PENDING_MAP_FILE = 'cluster.pending.json'

/** The map of a transition the coordinator has begun installing but not yet published. */
export class PendingMapFile {
  readonly path: string

  constructor (dataDir: string) {
    this.path = join(dataDir, PENDING_MAP_FILE)
  }

  load (): ClusterMap | undefined {
    const raw = readJson(this.path)
    return raw === undefined ? undefined : validateMap(raw)
  }

  save (map: ClusterMap): void {
    writeJsonAtomic(this.path, map)
  }

  clear (): void {
    rmSync(this.path, { force: true })
  }
}
