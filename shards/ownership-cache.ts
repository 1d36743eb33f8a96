import { Ownership } from '../src/membership/ownership'
import { validateMap } from '../src/membership/map'
import { ShardKvError } from '../src/protocol/errors'
import type { KvStore } from '../src/storage/store'
import type { MigrationStore } from '../src/storage/migration-store'

/**
 * A worker's view of the map installed on its node. The database is the source of
 * truth (another worker may install a map at any moment), so every request reads
 * the installed epoch, a one-row lookup, and the ring is rebuilt only when it moved.
 */
export class OwnershipCache {
  private current: Ownership = new Ownership(undefined, undefined)
  private coordinatorUrl: string | undefined
  private selfUrl: string | undefined

  constructor (private readonly store: KvStore, private readonly migration: MigrationStore) {}

  /** The ownership under the installed epoch (or `epoch`, when the caller read it in a transaction). */
  get (epoch: number = this.store.installedEpoch()): Ownership {
    if (epoch !== this.current.epoch) this.reload()
    return this.current
  }

  /** The coordinator named by the installed map's installer. */
  coordinator (): string | undefined {
    this.get()
    return this.coordinatorUrl
  }

  /**
   * Reads the installed record again even at the same epoch: a coordinator that moved
   * re-installs the installed epoch under its new URL (src/auth/senders.ts), and the
   * shipper must ask that one.
   */
  invalidate (): void {
    this.reload()
  }

  /** This node's URL in the installed map (what it signs its shipments with). */
  self (): string | undefined {
    this.get()
    return this.selfUrl
  }

  private reload (): void {
    const record = this.migration.installedMap()
    this.coordinatorUrl = record?.coordinator
    this.selfUrl = record?.self
    if (record === undefined) {
      this.current = new Ownership(undefined, undefined)
      return
    }
    const map = validateMap(record.map)
    this.current = new Ownership({ ...map, epoch: record.epoch }, record.group, record.self)
  }

  /** The map installed on this node, for a 421 body (so any router can refresh from it). */
  installed (): unknown {
    return this.migration.installedMap()?.map
  }

  misdirected (key: string, ownership: Ownership): ShardKvError {
    return new ShardKvError('misdirected', `group ${ownership.group ?? '?'} does not serve this key at epoch ${ownership.epoch}`, {
      epoch: ownership.epoch,
      group: ownership.group,
      map: this.installed()
    })
  }
}
