import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from 'undici'
import { startCluster, sleep } from '../harness/cluster'
import { hashToken, newToken, type Role } from '../../src/auth/tokens'
import { DASHBOARD } from '../../src/protocol/wire'
import type { DashboardSnapshot, DashboardViewer } from '../../src/protocol/dashboard'

/**
 * The dashboard's HTTP side against a real protected cluster: its page files are open and
 * locked down (CSP), its snapshot stream (GET /ui/events) needs a read token in the
 * Authorization header and nothing else, the number of streams is bounded and a closed one
 * frees its place, and a router with open streams still stops at once.
 * (The page itself, in a browser: dashboard.test.ts.)
 */

const T = { admin: newToken(), reader: newToken(), writer: newToken() }
const TOKENS: Array<{ name: string, roles: Role[], token: string }> = [
  { name: 'admin', roles: ['admin', 'read', 'write'], token: T.admin },
  { name: 'reader', roles: ['read'], token: T.reader },
  { name: 'writer', roles: ['write'], token: T.writer }
]
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
/** coordinator/dashboard/hub.ts's default bound. */
const MAX_STREAMS = 32

interface ServerEvent { event: string, data: string }

interface EventStream {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The body of a refusal (empty for a stream). */
  body: string
  /** The next event named `name` (events before it are skipped). */
  next: (name: string, timeoutMs?: number) => Promise<ServerEvent>
  close: () => void
}

/**
 * Opens GET /ui/events and parses its Server-Sent Events as they arrive. Each stream has
 * a connection of its own, destroyed on close: an undici pool whose requests were aborted
 * may open fresh connections that never send a request, which a server's close waits for.
 */
async function openEvents (url: string, headers: Record<string, string> = {}): Promise<EventStream> {
  const client = new Client(new URL(url).origin)
  const res = await client.request({ path: new URL(url).pathname + new URL(url).search, method: 'GET', headers }).catch(async (err: Error) => {
    await client.destroy()
    throw err
  })
  const base = { status: res.statusCode, headers: res.headers, close: () => { void client.destroy() } }
  if (res.statusCode !== 200) {
    const body = await res.body.text()
    base.close()
    return { ...base, body, next: async () => await Promise.reject(new Error(`no stream (${res.statusCode})`)) }
  }
  const queue: ServerEvent[] = []
  let ended = false
  let wake: (() => void) | undefined
  let buffer = ''
  res.body.setEncoding('utf8')
  res.body.on('data', (chunk: string) => {
    buffer += chunk
    for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
      const frame = buffer.slice(0, i).split('\n')
      buffer = buffer.slice(i + 2)
      queue.push({ event: frame.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message', data: frame.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n') })
    }
    wake?.()
  })
  const finish = (): void => { ended = true; wake?.() }
  res.body.on('end', finish).on('error', finish).on('close', finish)
  const next = async (name: string, timeoutMs = 10_000): Promise<ServerEvent> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const e = queue.shift()
      if (e !== undefined && e.event === name) return e
      if (e !== undefined) continue
      if (ended) throw new Error(`the stream ended before a ${name} event`)
      if (Date.now() > deadline) throw new Error(`no ${name} event within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 100) })
    }
  }
  return { ...base, body: '', next }
}

t.test('the dashboard over HTTP', async (t) => {
  const c = await startCluster(t, {
    name: 'dashboard-stream',
    groups: 1,
    workers: 1,
    prepare: (tmp) => {
      writeFileSync(join(tmp, 'tokens.json'), JSON.stringify({ tokens: TOKENS.map((x) => ({ name: x.name, sha256: hashToken(x.token), roles: x.roles })) }))
      writeFileSync(join(tmp, 'secret'), newToken())
      const files = ['--tokens-file', join(tmp, 'tokens.json'), '--cluster-secret-file', join(tmp, 'secret')]
      return { shardArgs: files, routerArgs: files }
    }
  })
  const events = `${c.routerUrl}${DASHBOARD.events}`

  await t.test('the page and its files are open, under a strict CSP', async (t) => {
    const redirect = await c.http.request('GET', `${c.routerUrl}${DASHBOARD.page}`)
    t.equal(redirect.status, 301)
    t.equal(redirect.header('location'), `${DASHBOARD.page}/`)
    const page = await c.http.request('GET', `${c.routerUrl}${DASHBOARD.page}/`)
    t.equal(page.status, 200)
    t.match(page.header('content-type'), /^text\/html/)
    t.match(page.header('content-security-policy'), /default-src 'none'; script-src 'self'/)
    t.match(page.text(), /<script type="module" src="app\.js">/)
    for (const [file, type] of [['app.js', /javascript/], ['style.css', /^text\/css/]] as const) {
      const res = await c.http.request('GET', `${c.routerUrl}${DASHBOARD.page}/${file}`)
      t.equal(res.status, 200, file)
      t.match(res.header('content-type'), type, file)
    }
    for (const path of ['/ui/%2e%2e/%2e%2e/%2e%2e/package.json', '/ui/..%2f..%2f..%2fpackage.json', '/ui/nothing-here.js']) {
      const res = await c.http.request('GET', `${c.routerUrl}${path}`)
      t.not(res.status, 200, `${path} is not served`)
      t.notMatch(res.text(), /"name": "shardkv"/, path)
    }
  })

  await t.test('the stream needs a token with the read role, in the Authorization header', async (t) => {
    const refusals: Array<[string, Record<string, string>, string, number, string]> = [
      ['no token', {}, '', 401, 'unauthenticated'],
      ['an unknown token', bearer(newToken()), '', 401, 'unauthenticated'],
      ['a token in the URL', {}, `?token=${T.admin}`, 401, 'unauthenticated'],
      ['a write-only token', bearer(T.writer), '', 403, 'forbidden']
    ]
    const head = await c.http.request('HEAD', events, { headers: bearer(T.reader) })
    t.equal(head.status, 404, 'HEAD opens no stream')
    for (const [what, headers, query, status, code] of refusals) {
      const s = await openEvents(events + query, headers)
      t.equal(s.status, status, what)
      t.equal(JSON.parse(s.body).error, code, what)
      if (status === 401) t.match(s.headers['www-authenticate'], /^Bearer/, what)
    }
  })

  await t.test('a reader gets the viewer, then snapshots at least every second', async (t) => {
    const s = await openEvents(events, bearer(T.reader))
    t.teardown(s.close)
    t.equal(s.status, 200)
    t.match(s.headers['content-type'], /^text\/event-stream/)
    t.equal(s.headers['cache-control'], 'no-store')
    t.same(JSON.parse((await s.next('hello')).data) as DashboardViewer, { name: 'reader', admin: false })
    const first = JSON.parse((await s.next('snapshot')).data) as DashboardSnapshot
    t.same(first.cluster.groups.map((g) => g.id), ['g1'])
    t.equal(first.cluster.groups[0]?.nodes[0]?.url, c.primaries[0]?.url)
    t.ok(first.cluster.epoch >= 1)
    t.same(first.operations, [])
    const started = Date.now()
    const later = JSON.parse((await s.next('snapshot', 3000)).data) as DashboardSnapshot
    t.ok(Date.now() - started < 2500, 'the next snapshot within the heartbeat')
    t.ok(Date.parse(later.at) > Date.parse(first.at))
    const admin = await openEvents(events, bearer(T.admin))
    t.teardown(admin.close)
    t.same(JSON.parse((await admin.next('hello')).data), { name: 'admin', admin: true })
  })

  await t.test(`at most ${MAX_STREAMS} streams; a closed one frees its place`, async (t) => {
    // The previous subtest's streams were closed by its teardown: wait until the router saw that.
    const streams: EventStream[] = []
    for (let i = 0; i < MAX_STREAMS; i++) {
      const s = await openEventsWhenFree(events)
      streams.push(s)
    }
    t.teardown(() => { for (const s of streams) s.close() })
    t.ok(streams.every((s) => s.status === 200), `${MAX_STREAMS} streams open`)
    const refused = await openEvents(events, bearer(T.reader))
    t.equal(refused.status, 503)
    t.equal(JSON.parse(refused.body).error, 'unavailable')
    streams.pop()?.close()
    const again = await openEventsWhenFree(events)
    streams.push(again)
    t.equal(again.status, 200, 'a place freed by a closed stream is taken again')
    await again.next('snapshot')
  })

  await t.test('a router with open streams says bye and stops at once', async (t) => {
    const s = await openEventsWhenFree(events)
    t.teardown(s.close)
    await s.next('snapshot')
    const started = Date.now()
    // The router relays the coordinator's stream: stopping it ends the stream with a bye of its own.
    c.router.signal('SIGTERM')
    t.same(JSON.parse((await s.next('bye')).data), { reason: 'closing' })
    const exit = await c.router.exited
    t.equal(exit.code, 0, 'the router stopped cleanly')
    t.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms, not held by the stream`)
  })
})

/** A reader's stream, retried while the router still counts streams that were just closed. */
async function openEventsWhenFree (url: string): Promise<EventStream> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const s = await openEvents(url, bearer(T.reader))
    if (s.status !== 503 || Date.now() > deadline) return s
    await sleep(50)
  }
}
