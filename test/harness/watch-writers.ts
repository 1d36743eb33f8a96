import type { Test } from 'tap'
import type { KvClient, WatchEvent } from '../../src/client'
import { waitFor } from './cluster'
import type { KeyChain, SeenEvent } from './watch-history'

/**
 * The two halves of a watch test (test/harness/watch-history.ts checks them against each
 * other): a watcher recording every event of a prefix, and writers, one per set of keys, so
 * that each key's writes form a chain in a known order.
 */

export interface Recorder { events: WatchEvent[], progress: number, stop: () => void, done: Promise<unknown>, error?: unknown }

/** Records the stream of `prefix` (from `since` when given) until stopped; an error ends it and is kept in `error` (`done` still resolves). */
export function record (client: KvClient, prefix: string, since?: string): Recorder {
  const abort = new AbortController()
  const rec: Recorder = { events: [], progress: 0, stop: () => { abort.abort() }, done: Promise.resolve() }
  rec.done = (async () => {
    try {
      for await (const e of client.watch({ prefix, ...(since !== undefined ? { since } : {}), signal: abort.signal })) {
        if (e.type === 'progress') rec.progress++
        else rec.events.push(e)
      }
    } catch (err) {
      rec.error = err
    }
  })()
  return rec
}

/** Where the feeds stand now: the first event of a fresh stream is a progress event with that cursor. */
export async function cursorNow (client: KvClient, prefix: string): Promise<string> {
  const it = client.watch({ prefix })
  const first = await it.next()
  await it.return(undefined)
  if (first.value?.type !== 'progress') throw new Error(`a fresh stream began with ${JSON.stringify(first.value)}`)
  return first.value.cursor
}

/** A recorder stopped at teardown, returned once its stream has started (its first progress event). */
export async function startWatcher (t: Test, client: KvClient, prefix: string, since?: string): Promise<Recorder> {
  const rec = record(client, prefix, since)
  t.teardown(async () => { rec.stop(); await rec.done.catch(() => undefined) })
  await waitFor(() => rec.progress > 0, 30_000, 'the stream started')
  return rec
}

/** The key, kind and ETag of every change event (progress events left out). */
export function seen (events: readonly WatchEvent[]): SeenEvent[] {
  return events.flatMap((e) => e.type === 'progress' ? [] : [{ key: e.key, op: e.type, etag: e.etag }])
}

export interface KeyWriters {
  /** Every key's writes so far: its ETag when acknowledged, null when the outcome is unknown. */
  chains: Map<string, KeyChain>
  /** Writes attempted so far. */
  ops: () => number
  /** Stops the writers after their current write and waits for them (also done at teardown). */
  stop: () => Promise<void>
}

/** `writers` loops, each putting `${prefix}${w}-${i}` for its `keysPerWriter` keys in turn until stopped. */
export function startKeyWriters (t: Test, client: KvClient, prefix: string, o: { writers: number, keysPerWriter: number }): KeyWriters {
  const chains = new Map<string, KeyChain>()
  let stopped = false
  let ops = 0
  const writer = async (w: number): Promise<void> => {
    const keys = Array.from({ length: o.keysPerWriter }, (_, i) => `${prefix}${w}-${i}`)
    for (const k of keys) chains.set(k, { writes: [] })
    for (let n = 0; !stopped; n++) {
      const key = keys[n % keys.length] as string
      try {
        chains.get(key)?.writes.push((await client.put(key, `${key}#${n}`)).etag)
      } catch {
        chains.get(key)?.writes.push(null)
      }
      ops++
    }
  }
  const running = Promise.all(Array.from({ length: o.writers }, async (_, w) => { await writer(w) }))
  const stop = async (): Promise<void> => { stopped = true; await running }
  t.teardown(stop)
  return { chains, ops: () => ops, stop }
}
