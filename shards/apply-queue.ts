import type { FastifyReply } from 'fastify'
import { ShardKvError } from '../src/protocol/errors'
import type { ReplicaStore, Shipment } from '../src/storage/replica-store'
import type { WireShipmentAnswer } from '../src/protocol/log-codec'

/**
 * Group commit of pipelined shipments on a replica. A primary writes several shipments
 * on one connection before the first is answered (shards/ship-stream.ts), so several
 * usually reach the replica in one read of its socket. Each is checked as it arrives
 * (replication-api.ts) and queued here; the queue commits them all in one transaction —
 * one fsync — on the next turn of the event loop (setImmediate: after the requests parsed
 * from the same read), and only then answers each with its own position.
 *
 * A shipment joins the queue only when it continues exactly where the queued ones end
 * (same group, term and sender); anything else has the queue committed first and is then
 * judged against the replica's real position. And because a map install or a resync may
 * run between the check and the commit, the commit checks again, in its transaction,
 * that the batch still continues the replica's position under the term it was judged for
 * (`still`); if not, nothing of it is applied and every shipment in it is answered 409.
 */

export interface QueuedShipment {
  group: string | undefined
  term: number
  sender: string | undefined
  from: number
  shipment: Shipment
  reply: FastifyReply
}

export class ApplyQueue {
  private queue: QueuedShipment[] = []

  /**
   * `still(term, group, sender)`: whether the replica still takes shipments of that
   * term, group and sender (as replication-api.ts judges them).
   */
  constructor (private readonly replica: ReplicaStore, private readonly still: (term: number, group: string | undefined, sender: string | undefined) => boolean) {}

  /** Whether a shipment continues exactly where the queued ones end. */
  continues (s: Pick<QueuedShipment, 'group' | 'term' | 'sender' | 'from'>): boolean {
    const last = this.queue[this.queue.length - 1]
    return last !== undefined && last.group === s.group && last.term === s.term && last.sender === s.sender && last.shipment.to === s.from
  }

  /** Queues a shipment already judged to continue the replica (or the queue): answered when committed. */
  push (s: QueuedShipment): void {
    this.queue.push(s)
    if (this.queue.length === 1) setImmediate(() => { this.flush() })
  }

  /** Commits whatever is queued now (also before a shipment that does not continue it is judged). */
  flush (): void {
    const batch = this.queue
    if (batch.length === 0) return
    this.queue = []
    const first = batch[0] as QueuedShipment
    let answer: ShardKvError | undefined
    try {
      if (!this.still(first.term, first.group, first.sender)) {
        answer = new ShardKvError('stale_term', 'the map or the term changed before these shipments were committed')
      } else if (!this.replica.applyAll(first.from, batch.map((b) => b.shipment))) {
        answer = new ShardKvError('gap', `this replica is at ${this.replica.position()}`, { position: this.replica.position() })
      }
    } catch (err) {
      for (const b of batch) b.reply.send(err)
      return
    }
    for (const b of batch) {
      if (answer !== undefined) b.reply.send(answer)
      else {
        const answered: WireShipmentAnswer = { position: b.shipment.to }
        b.reply.send(answered)
      }
    }
  }
}
