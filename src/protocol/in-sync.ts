import { ShardKvError } from './errors'
import type { WireInSyncChange } from './wire'

/**
 * Reads `POST /internal/replication/in-sync`'s body into a WireInSyncChange, or refuses it
 * (400 invalid_request, nothing changed): the one place its fields are checked.
 */
export function parseInSyncChange (body: Record<string, unknown>): WireInSyncChange {
  const { group, url, inSync, term, sender } = body
  if (typeof group !== 'string' || group === '') throw new ShardKvError('invalid_request', 'group (a non-empty string) is required')
  if (typeof url !== 'string' || url === '') throw new ShardKvError('invalid_request', 'url (the replica) is required')
  if (typeof inSync !== 'boolean') throw new ShardKvError('invalid_request', 'inSync must be true or false')
  if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 1) throw new ShardKvError('invalid_request', 'term must be an integer >= 1')
  if (sender !== undefined && typeof sender !== 'string') throw new ShardKvError('invalid_request', 'sender, when given, is the asking primary\'s URL')
  return { group, url, inSync, term, ...(sender !== undefined ? { sender } : {}) }
}
