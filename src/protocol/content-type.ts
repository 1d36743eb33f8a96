import { ShardKvError } from './errors'
import { DEFAULT_CONTENT_TYPE } from './wire'

/**
 * The Content-Type stored with a value and sent back on every read of it: at most 256
 * characters of printable ASCII (a media type and its parameters), so a stored value
 * cannot smuggle header bytes or grow every answer. One rule for the router, shard
 * nodes and batches.
 */

export const MAX_CONTENT_TYPE_LENGTH = 256
const CONTENT_TYPE = /^[\x21-\x7e][\x20-\x7e]*$/

/** The content type to store for a write (the default when none was sent); throws a 400 on a bad one. */
export function storedContentType (value: string | undefined, what = 'Content-Type'): string {
  if (value === undefined) return DEFAULT_CONTENT_TYPE
  if (value.length > MAX_CONTENT_TYPE_LENGTH || !CONTENT_TYPE.test(value)) {
    throw new ShardKvError('invalid_header', `${what} must be printable ASCII, at most ${MAX_CONTENT_TYPE_LENGTH} characters`)
  }
  return value
}
