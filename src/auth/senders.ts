/**
 * Who may send what, among peers that all hold the cluster secret (peer.ts: the secret
 * is the trust root, so these checks stop honest peers acting out of turn — a deposed
 * primary still shipping, a second router pushing its own maps — not a liar holding
 * the secret). Pure decisions; the shard node's routes call them and throw.
 */

export type SenderVerdict = { ok: true } | { ok: false, reason: string }

const OK: SenderVerdict = Object.freeze({ ok: true })

/**
 * A shipment is applied only from the group's primary in the replica's installed map.
 * `sender` is the shipper's own data URL (its identity in the map), `primary` the
 * primary's URL in the replica's map (undefined: the map names none for this node).
 */
export function judgeShipmentSender (sender: unknown, primary: string | undefined): SenderVerdict {
  if (typeof sender !== 'string') return { ok: false, reason: 'the shipment does not name its sender' }
  if (primary === undefined) return { ok: false, reason: 'the installed map names no primary for this replica' }
  if (sender !== primary) return { ok: false, reason: `${sender} is not the group's primary (${primary}) in the installed map` }
  return OK
}

/**
 * An in-sync change is asked only by the group's primary in the coordinator's map (its
 * shipper; `sender` is its URL). A deposed primary fails the term check after this;
 * one naming a node that is not the primary at all is no honest peer.
 */
export function judgeInSyncAsker (sender: unknown, primary: string | undefined): SenderVerdict {
  if (typeof sender !== 'string') return { ok: false, reason: 'the in-sync change does not name its sender' }
  if (sender !== primary) return { ok: false, reason: `${sender} is not the group's primary (${String(primary)})` }
  return OK
}

export interface InstalledCoordinator {
  epoch: number
  /** The coordinator URL the installed map's installer gave (absent before any install). */
  coordinator?: string
}

/**
 * A map install is accepted only from the coordinator that installed the current map.
 * The first install is trusted on the secret alone (nothing to compare with). A
 * coordinator that moved (a router restarted on another address) is let in by one
 * handshake only: re-installing exactly the installed epoch, which is what a restarted
 * coordinator does first with its persisted map — a different map at a higher epoch,
 * the one that would purge rows or lock the coordinator out, needs the known URL.
 */
export function judgeMapInstaller (installed: InstalledCoordinator | undefined, claim: { epoch: number, coordinator: unknown }): SenderVerdict {
  if (installed?.coordinator === undefined) return OK
  if (claim.coordinator === installed.coordinator) return OK
  if (typeof claim.coordinator === 'string' && claim.epoch === installed.epoch) return OK
  return { ok: false, reason: `maps come from the coordinator at ${installed.coordinator}, not ${String(claim.coordinator)}` }
}

/** A lease is accepted only from the coordinator named by the installed map (none named: secret alone). */
export function judgeLeaseGrantor (installed: InstalledCoordinator | undefined, coordinator: unknown): SenderVerdict {
  if (installed?.coordinator === undefined || coordinator === installed.coordinator) return OK
  return { ok: false, reason: `leases come from the coordinator at ${installed.coordinator}, not ${String(coordinator)}` }
}
