import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { validateMap, type ClusterMap } from './map'

export const MAP_FILE = 'cluster.json'

/**
 * Durable storage of the coordinator's map: written to a temp file, fsynced, renamed
 * over the old one and the directory fsynced, so a crash leaves either the old map or
 * the new one, never a torn file.
 */
export class MapFile {
  readonly path: string
  private readonly dir: string

  constructor (dataDir: string) {
    this.dir = dataDir
    this.path = join(dataDir, MAP_FILE)
  }

  load (): ClusterMap | undefined {
    let text: string
    try {
      text = readFileSync(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    return validateMap(JSON.parse(text))
  }

  save (map: ClusterMap): void {
    mkdirSync(this.dir, { recursive: true })
    const tmp = `${this.path}.${process.pid}.tmp`
    const fd = openSync(tmp, 'w')
    try {
      writeFileSync(fd, JSON.stringify(map, null, 2) + '\n')
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, this.path)
    const dirFd = openSync(this.dir, 'r')
    try {
      fsyncSync(dirFd)
    } finally {
      closeSync(dirFd)
    }
  }
}
