import t from 'tap'
import { request } from 'undici'
import { createClient, type KvClient, type WatchChange, type WatchEvent } from '../../src/client'
import { parseFrames } from '../../src/client/watch'
import { startCluster, waitFor } from '../harness/cluster'

/**
 * Watch streams with values, their limits and their metrics, against real processes:
 * `values=1` puts the value in put events (text as text, bytes as base64; a version
 * already overwritten says so), in both client modes and on the wire; an expiry reaches
 * the watcher as a delete with reason "expired"; values count toward the per-stream
 * buffer in bytes (a stream of large values that its client does not read overflows,
 * the same changes without values do not); the per-token stream limit and the buffer
 * are router flags; the router and the nodes report streams and feed retention on
 * their real /metrics.
 */

const BUFFER = 64 * 1024

/** A metric's value in a Prometheus text page (undefined: absent). */
function metric (text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

async function changes (client: KvClient, prefix: string, since: string, until: (events: WatchChange[]) => boolean): Promise<WatchChange[]> {
  const events: WatchChange[] = []
  const abort = new AbortController()
  const it = client.watch({ prefix, since, values: true, signal: abort.signal })
  await waitFor(async () => {
    const next = await it.next()
    if (next.done === true) throw new Error('the stream ended')
    if (next.value.type !== 'progress') events.push(next.value)
    return until(events)
  }, 30_000, () => `events until the condition: ${JSON.stringify(events.map((e) => [e.type, e.key]))}`)
  abort.abort()
  await it.return(undefined)
  return events
}

/** A raw SSE response read on demand (nothing is read until `frames` is called). */
interface RawStream { status: number, frames: (until: (text: string) => boolean) => Promise<string>, close: () => void }

async function rawWatch (url: string, query: string): Promise<RawStream> {
  const abort = new AbortController()
  const res = await request(`${url}/watch?${query}`, { signal: abort.signal })
  let text = ''
  const iterator = res.body[Symbol.asyncIterator]()
  return {
    status: res.statusCode,
    frames: async (until) => {
      while (!until(text)) {
        const next = await iterator.next()
        if (next.done === true) break
        text += (next.value as Buffer).toString('utf8')
      }
      return text
    },
    close: () => { abort.abort(); res.body.on('error', () => undefined); res.body.destroy() }
  }
}

t.test('values in events, expiry, limits and metrics', async (t) => {
  const c = await startCluster(t, { name: 'watch-values', groups: 2, workers: 2, replicas: 0, routerArgs: ['--watch-max-streams-per-token', '3', '--watch-stream-buffer-bytes', String(BUFFER)], shardArgs: ['--watch-retention-seconds', '900'] })
  const routed = createClient({ url: c.routerUrl, retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  const direct = createClient({ url: c.routerUrl, mode: 'direct', retryTimeoutMs: 30_000, timeoutMs: 30_000 })
  t.teardown(async () => { await Promise.all([routed.close(), direct.close()]) })
  const prefix = `val-${Date.now().toString(36)}/`

  const first = routed.watch({ prefix })
  const start = await first.next()
  await first.return(undefined)
  const cursor = (start.value as WatchEvent).cursor
  const binary = Buffer.from([0, 255, 1, 128, 10])
  const textPut = await routed.put(`${prefix}text`, 'héllo', { contentType: 'text/plain; charset=utf-8' })
  const bin = await routed.put(`${prefix}bin`, binary, { contentType: 'application/octet-stream' })
  const old = await routed.put(`${prefix}twice`, 'one')
  const now = await routed.put(`${prefix}twice`, 'two')

  // The keys sit on different groups, and a watch orders changes per key, not across
  // groups: wait for every version the checks read, not only the last one written.
  const awaited = [textPut.etag, bin.etag, old.etag, now.etag]
  for (const [mode, client] of [['routed', routed], ['direct', direct]] as const) {
    const got = await changes(client, prefix, cursor, (ev) => awaited.every((etag) => ev.some((e) => e.etag === etag)))
    const of = (etag: string): WatchChange | undefined => got.find((e) => e.etag === etag)
    t.equal(got.find((e) => e.key === `${prefix}text`)?.value?.toString('utf8'), 'héllo', `${mode}: a text value`)
    t.same(of(bin.etag)?.value, binary, `${mode}: a binary value, byte for byte`)
    t.match(of(old.etag), { valueOmitted: 'superseded' }, `${mode}: an overwritten version says so`)
    t.equal(of(old.etag)?.value, undefined, `${mode}: and has no value`)
    t.equal(of(now.etag)?.value?.toString('utf8'), 'two', `${mode}: the live version has its value`)
  }

  const raw = await rawWatch(c.routerUrl, `prefix=${encodeURIComponent(prefix)}&values=1&since=${cursor}`)
  const wire = await raw.frames((frames) => awaited.every((etag) => frames.includes(etag.replace(/"/g, '\\"'))))
  raw.close()
  const data = parseFrames(wire).frames.filter((f) => f.event === 'put').map((f) => JSON.parse(f.data) as Record<string, unknown>)
  t.match(data.find((d) => d.key === `${prefix}text`), { value: 'héllo', encoding: 'utf8' }, 'on the wire: text as text')
  t.match(data.find((d) => d.key === `${prefix}bin`), { value: binary.toString('base64'), encoding: 'base64' }, 'bytes as base64')
  const bad = await c.http.request('GET', `${c.routerUrl}/watch?values=yes`)
  t.equal(bad.status, 400, 'values=yes is a 400')
  t.match(bad.json(), { error: 'invalid_request' })

  // An expiry as the watcher sees it: the sweeper's delete, reason "expired".
  const ttlKey = `${prefix}ttl`
  await routed.put(ttlKey, 'short', { ttl: 1 })
  const expired = await changes(routed, prefix, cursor, (ev) => ev.some((e) => e.key === ttlKey && e.type === 'delete'))
  t.match(expired.find((e) => e.key === ttlKey && e.type === 'delete'), { reason: 'expired' }, 'the sweeper\'s delete carries reason expired')

  // The per-token limit (no tokens here: all clients share one allowance of 3).
  const open = await Promise.all([0, 1, 2].map(async () => await rawWatch(c.routerUrl, `prefix=${encodeURIComponent(prefix)}`)))
  t.same(open.map((s) => s.status), [200, 200, 200])
  const fourth = await c.http.request('GET', `${c.routerUrl}/watch?prefix=${encodeURIComponent(prefix)}`)
  t.equal(fourth.status, 429, 'a fourth stream: 429')
  t.match(fourth.json(), { error: 'too_many_streams', max: 3 })
  let page = await c.http.request('GET', `${c.routerUrl}/metrics`)
  t.equal(metric(page.text(), 'shardkv_router_watch_streams'), 3, 'metrics: 3 open streams')
  for (const s of open) s.close()
  await waitFor(async () => metric((await c.http.request('GET', `${c.routerUrl}/metrics`)).text(), 'shardkv_router_watch_streams') === 0, 30_000, 'the streams closed')

  // Values count in bytes: a stream of large values that nobody reads overflows the
  // 64 KiB buffer; the same changes without values (a few KiB) do not.
  const big = `${prefix}big/`
  const heavy = await rawWatch(c.routerUrl, `prefix=${encodeURIComponent(big)}&values=1`)
  const light = await rawWatch(c.routerUrl, `prefix=${encodeURIComponent(big)}`)
  t.teardown(() => { heavy.close(); light.close() })
  const value = Buffer.alloc(512 * 1024, 'v')
  for (let i = 0; i < 40; i++) await routed.put(`${big}${i}`, value, { contentType: 'application/octet-stream' })
  await waitFor(async () => (metric((await c.http.request('GET', `${c.routerUrl}/metrics`)).text(), 'shardkv_router_watch_streams_ended_total', '{reason="stream_overflow"}') ?? 0) >= 1, 60_000, 'the stream with values overflowed')
  const heavyText = await heavy.frames(() => false)
  const end = parseFrames(heavyText).frames.at(-1)
  t.equal(end?.event, 'error', 'the unread stream with values ends with an error event')
  t.match(JSON.parse(end?.data ?? '{}'), { error: 'stream_overflow', resume: String }, 'stream_overflow, with a cursor to resume from')
  const lightText = await light.frames((text) => parseFrames(text).frames.filter((f) => f.event === 'put').length >= 40)
  t.equal(parseFrames(lightText).frames.filter((f) => f.event === 'put').length, 40, 'without values the same 40 changes fit: all delivered, no error')
  light.close()

  page = await c.http.request('GET', `${c.routerUrl}/metrics`)
  const text = page.text()
  t.ok((metric(text, 'shardkv_router_watch_events_total') ?? 0) >= 40, 'metrics: events sent counted')
  t.ok((metric(text, 'shardkv_router_watch_streams_ended_total', '{reason="client_closed"}') ?? 0) >= 3, 'metrics: streams ended by the client')
  t.equal(metric(text, 'shardkv_router_watch_max_streams_per_token'), 3, 'metrics: the configured stream limit')
  t.equal(metric(text, 'shardkv_router_watch_stream_buffer_bytes'), BUFFER, 'metrics: the configured buffer')
  for (const shard of c.primaries) {
    const node = (await c.http.request('GET', `${shard.url}/metrics`)).text()
    t.equal(metric(node, 'shardkv_shard_watch_feed_retention_seconds'), 900, `${shard.group}: the configured feed retention`)
    t.ok((metric(node, 'shardkv_shard_watch_feed_entries') ?? 0) > 0, `${shard.group}: feed entries held`)
    t.type(metric(node, 'shardkv_shard_watch_feed_floor_seq'), 'number', `${shard.group}: the feed floor`)
    t.ok((metric(node, 'shardkv_shard_watch_feed_oldest_age_seconds') ?? -1) >= 0, `${shard.group}: the oldest entry's age`)
  }
})
