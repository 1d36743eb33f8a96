import { ShardKvError } from '../protocol/errors'

/**
 * An integer query parameter (`after=`, `wait=` of the map follows): absent → `fallback`;
 * anything but decimal digits (an optional `-`) within [-1, max] is 400 `invalid_request`.
 */
export function queryInteger (raw: unknown, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined) return fallback
  const n = typeof raw === 'string' && /^-?\d{1,16}$/.test(raw) ? Number(raw) : NaN
  if (!Number.isSafeInteger(n) || n < -1 || n > max) throw new ShardKvError('invalid_request', `${name} must be an integer from -1 to ${max}`)
  return n
}
