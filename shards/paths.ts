import { join } from 'node:path'

/** Where a node keeps its partition inside its data dir. */
export function databasePath (dataDir: string): string {
  return join(dataDir, 'shard.db')
}
