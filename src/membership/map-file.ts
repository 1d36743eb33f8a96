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
