import { Pool } from '../http/undici'
import { WATCH_PATH } from '../protocol/wire'
import { decodeEventValue, type WatchErrorData, type WatchEventData, type WatchProgressData } from '../protocol/watch'
import { errorFromResponse, KvError } from './errors'
import { Backoff, clientPoolOptions, credentialHeaders, sleep, type Credentials } from './transport'

/**
 * `client.watch()`: a router's change stream (GET /watch, src/protocol/watch.ts) as an
 * async iterator, in either client mode (merging the groups' feeds is the router's job).
 * It reconnects by itself — after a dropped connection, a router restart or a
 * `stream_overflow` — from the last cursor it received, so the caller sees every change
 * at least once, in commit order per key. It throws a KvError on `cursor_compacted`
 * (its `details.restart` is the cursor to watch from after re-reading the prefix) and
 * when the router stays unreachable for `retryTimeoutMs`.
 */

export interface WatchOptions {
  /** Only keys that start with it. */
  prefix?: string
  /** A cursor from an earlier event (its `cursor`): resume right after it. Default: from now. */
  since?: string
  /** Put events carry the value (`value`, as bytes; `valueOmitted` when a newer change replaced it first). */
  values?: boolean
  /** Ends the iteration (the iterator then returns). */
  signal?: AbortSignal
}

/** A change: the wire's event data, its value (with `values: true`) decoded to bytes. */
export type WatchChange = { type: 'put' | 'delete', cursor: string, value?: Buffer } & Omit<WatchEventData, 'value' | 'encoding'>

export type WatchEvent =
  | WatchChange
  | ({ type: 'progress', cursor: string } & WatchProgressData)

/** One received frame as the iterator yields it. */
export function toWatchEvent (type: string, cursor: string, data: string): WatchEvent {
  const parsed = JSON.parse(data) as WatchEventData & WatchProgressData
  if (type === 'progress') return { type, cursor, groups: parsed.groups, ...(parsed.lagging !== undefined ? { lagging: parsed.lagging } : {}) }
  const { value, encoding, ...rest } = parsed
  return { type: type as 'put' | 'delete', cursor, ...rest, ...(value !== undefined ? { value: decodeEventValue(value, encoding) } : {}) }
}

export interface WatchConnection {
  url: string
  credentials: Credentials
  retryTimeoutMs: number
  /** Longest silence on an open stream (progress events come every 2 s). */
  timeoutMs: number
}

interface Frame { event: string, id: string | undefined, data: string }

/** Splits Server-Sent Events text into frames; returns the unfinished rest. */
export function parseFrames (text: string): { frames: Frame[], rest: string } {
  const frames: Frame[] = []
  const parts = text.split('\n\n')
  const rest = parts.pop() ?? ''
  for (const part of parts) {
    let event = 'message'
    let id: string | undefined
    const data: string[] = []
    for (const line of part.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7)
      else if (line.startsWith('id: ')) id = line.slice(4)
      else if (line.startsWith('data: ')) data.push(line.slice(6))
    }
    frames.push({ event, id, data: data.join('\n') })
  }
  return { frames, rest }
}

function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

export async function * watchEvents (conn: WatchConnection, options: WatchOptions = {}): AsyncGenerator<WatchEvent> {
  const pool = new Pool(new URL(conn.url).origin, clientPoolOptions(1, conn.timeoutMs, conn.credentials))
  const auth = credentialHeaders(conn.credentials)
  let cursor = options.since
  let backoff = new Backoff(Date.now() + conn.retryTimeoutMs)
  try {
    while (!isAborted(options.signal)) {
      const q = new URLSearchParams({ prefix: options.prefix ?? '' })
      if (cursor !== undefined) q.set('since', cursor)
      if (options.values === true) q.set('values', '1')
      let failure: unknown
      try {
        const res = await pool.request({ path: `${WATCH_PATH}?${q.toString()}`, method: 'GET', headers: auth, signal: options.signal, bodyTimeout: conn.timeoutMs })
        if (res.statusCode !== 200) {
          const text = await res.body.text()
          let body: unknown
          try { body = JSON.parse(text) } catch { body = { message: text.slice(0, 200) } }
          throw errorFromResponse({ status: res.statusCode, body })
        }
        let buffered = ''
        for await (const chunk of res.body) {
          const { frames, rest } = parseFrames(buffered + (chunk as Buffer).toString('utf8'))
          buffered = rest
          for (const f of frames) {
            if (f.id !== undefined) cursor = f.id
            if (f.event === 'error') {
              const e = JSON.parse(f.data) as WatchErrorData
              if (e.error === 'stream_overflow' && e.resume !== undefined) cursor = e.resume
              else throw new KvError(e.error, e.message, e.restart !== undefined ? { restart: e.restart } : undefined)
              continue
            }
            backoff = new Backoff(Date.now() + conn.retryTimeoutMs)
            yield toWatchEvent(f.event, cursor ?? '', f.data)
          }
        }
      } catch (err) {
        if (err instanceof KvError && err.status < 500) throw err
        failure = err
      }
      if (isAborted(options.signal)) return
      // The stream ended or broke: resume from the last cursor, within the retry budget.
      const wait = backoff.step()
      if (wait === undefined) throw failure instanceof KvError ? failure : new KvError('unavailable', `the watch stream at ${conn.url} could not be resumed: ${String(failure ?? 'it kept ending')}`, undefined, 503)
      await sleep(wait)
    }
  } finally {
    await pool.destroy()
  }
}
