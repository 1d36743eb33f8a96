/**
 * The bookkeeping of a pipelined replication stream to one replica, without I/O.
 *
 * A primary keeps up to `window` shipments in flight to a replica. Each continues
 * exactly where the previous *sent* one ended (`sent`), so the replica can apply them
 * one after the other as they arrive while the primary already sends the next (the
 * replica's commit, fsync included, overlaps the next send). Each shipment is answered
 * on its own with the position the replica reached.
 *
 * What the primary may count as replicated (`acked`) is only ever a position a replica
 * answered: the highest one it answered since the stream last (re)started from a probe.
 * Positions sent but not answered count for nothing. A replica applies a shipment only
 * when its `from` is exactly its position (replication-api.ts), so a shipment that
 * arrives out of order, twice, or after one that failed is refused (409 gap), never
 * applied in the wrong place.
 *
 * On any failure (an error, a timeout, a 409 gap or resync) the stream stops sending,
 * lets the shipments still in flight settle (their answers still count: each is a
 * position the replica reached), then asks the replica where it stands (a probe) and
 * starts again from the answer: `sent` rewinds to what is acknowledged. The stream
 * also starts with a probe: until a replica has answered, nothing is known.
 */

export interface ShipWindow {
  /** Highest position the replica answered (-1: none since the last probe began). */
  acked: number
  /** Where the last sent shipment ended: the next one's `from` (-1: probe first). */
  sent: number
  /** Shipments sent and not answered yet. */
  inFlight: number
  /** A shipment failed: send nothing more until the in-flight ones settled and a probe answered. */
  broken: boolean
}

/** What the stream does next. */
export type WindowStep =
  | { kind: 'ship', from: number }
  /** Ask the replica where it stands (nothing in flight). */
  | { kind: 'probe' }
  /** Wait for an answer of a shipment in flight. */
  | { kind: 'wait' }
  /** Caught up with the primary's position, nothing in flight. */
  | { kind: 'idle' }

export const START: ShipWindow = { acked: -1, sent: -1, inFlight: 0, broken: false }

/** The next step, given the primary's position (`local`) and the most shipments in flight (`window` ≥ 1). */
export function nextStep (w: ShipWindow, local: number, window: number): WindowStep {
  if (w.broken || w.sent < 0) return w.inFlight > 0 ? { kind: 'wait' } : { kind: 'probe' }
  if (w.sent >= local) return w.inFlight > 0 ? { kind: 'wait' } : { kind: 'idle' }
  if (w.inFlight >= Math.max(1, window)) return { kind: 'wait' }
  return { kind: 'ship', from: w.sent }
}

/** A shipment (sent, from) → `to` went out. */
export function shipped (w: ShipWindow, to: number): ShipWindow {
  return { ...w, sent: to, inFlight: w.inFlight + 1 }
}

/** A shipment was answered: the replica stands at `position` (it applied everything up to there). */
export function answered (w: ShipWindow, position: number): ShipWindow {
  return { ...w, acked: Math.max(w.acked, position), inFlight: Math.max(0, w.inFlight - 1) }
}

/** A shipment failed (error, timeout, 409): stop sending until the stream is rewound. */
export function failed (w: ShipWindow): ShipWindow {
  return { ...w, inFlight: Math.max(0, w.inFlight - 1), broken: true }
}

/**
 * A probe answered `position` (only taken with nothing in flight): the stream goes on
 * from there. `acked` becomes the answer even when lower (a replica that resynced from
 * empty holds nothing of what it had answered before).
 */
export function rewound (w: ShipWindow, position: number): ShipWindow {
  return { acked: position, sent: position, inFlight: w.inFlight, broken: false }
}
