#!/usr/bin/env node
// Brings deploy/compose.yaml up and checks it for real, with the figures docs/deployment.md quotes:
//   node deploy/compose-check.mjs [--down]      (as root or a docker user, from the checkout)
// 1. `docker-compose up -d` (COMPOSE="docker compose" for the plugin), timed until every service is
//    healthy and a PUT through each router is answered.
// 2. GET /cluster through a router: 3 groups, each a primary and an in-sync replica.
// 3. A bounded write loop through router1 while g1 switches over through router2: the switchover's
//    time, and the loop's p50/p99/max latency and errors.
// 4. SIGKILL (docker kill) of the leading coordinator's container: the other leads (time), and a
//    switchover of g2 through a router succeeds; the killed one, started again, stands by.
// 5. `docker pause` of the leader past its lease: the other leads; unpaused, the old one is deposed
//    and stands by again in the same process (no restart).
// --down: `docker-compose down -v` at the end (containers, volumes, network), also on failure.
// Needs deploy/secrets/ (docs/deployment.md#compose) and the images shardkv:local, shardkv-etcd:bookworm.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const FILE = join(HERE, 'compose.yaml')
const COMPOSE = (process.env.COMPOSE ?? 'docker-compose').split(' ')
const TOKEN = readFileSync(join(HERE, 'secrets', 'admin-token'), 'utf8').trim()
const ROUTERS = ['http://127.0.0.1:8080', 'http://127.0.0.1:8081']
const COORDINATORS = { coordinator1: 'http://127.0.0.1:8090', coordinator2: 'http://127.0.0.1:8091' }
const AUTH = { authorization: `Bearer ${TOKEN}` }
const down = process.argv.includes('--down')

const compose = (...args) => execFileSync(COMPOSE[0], [...COMPOSE.slice(1), '-f', FILE, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (line) => { process.stdout.write(`${line}\n`) }

async function call (method, url, body, timeoutMs = 10_000) {
  const res = await fetch(url, { method, headers: AUTH, body, signal: AbortSignal.timeout(timeoutMs) })
  const text = await res.text()
  return { status: res.status, text }
}
async function until (what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try { const v = await fn(); if (v) return v } catch (err) { last = err.message }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${last})` : ''}`)
    await sleep(100)
  }
}
const pct = (sorted, p) => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
const ms = (x) => `${x.toFixed(1)} ms`

async function cluster (router) {
  const r = await call('GET', `${router}/cluster`)
  if (r.status !== 200) throw new Error(`GET /cluster ${r.status} ${r.text.slice(0, 200)}`)
  return JSON.parse(r.text)
}
const inSync = (v) => v.groups.length === 3 && v.groups.every((g) => g.nodes.length === 2 && g.nodes.every((n) => n.health === 'up' && (n.role === 'primary' || n.inSync === true)))
const primaryOf = (v, id) => v.groups.find((g) => g.id === id)?.nodes.find((n) => n.role === 'primary')?.url

async function leader () {
  for (const [service, url] of Object.entries(COORDINATORS)) {
    const h = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.json()).catch(() => undefined)
    if (h?.leader === true) return service
  }
  return undefined
}

/** POST switchover through a router, retried while the router answers 503 (no leader known yet). */
async function switchover (router, group) {
  const started = performance.now()
  const r = await until(`switchover of ${group} through ${router}`, async () => {
    const r = await call('POST', `${router}/admin/groups/${group}/switchover`, undefined, 30_000)
    if (r.status === 503) throw new Error(`${r.status} ${r.text.slice(0, 160)}`)
    return r
  }, 15_000)
  if (r.status !== 200) throw new Error(`switchover of ${group}: ${r.status} ${r.text}`)
  return { ms: performance.now() - started, answer: JSON.parse(r.text) }
}

/** Sequential PUTs from `clients` loops through one router until stop(); latency of each, and errors. */
function writeLoop (router, clients) {
  const latencies = []
  const spans = [] // [start, end] of every write, to pick those that overlapped an interval
  const errors = []
  let stopped = false
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; !stopped; i++) {
      const t0 = performance.now()
      try {
        const r = await call('PUT', `${router}/kv/loop-${c}-${i % 50}`, `v${i}`, 20_000)
        if (r.status >= 300) errors.push(`${r.status} ${r.text.slice(0, 120)}`)
      } catch (err) { errors.push(err.message) }
      const t1 = performance.now()
      latencies.push(t1 - t0)
      spans.push([t0, t1])
    }
  })
  const during = (from, to) => spans.filter(([a, b]) => b >= from && a <= to).map(([a, b]) => b - a)
  return { latencies, errors, during, stop: async () => { stopped = true; await Promise.all(loops) } }
}
function summary (latencies, errors) {
  const s = [...latencies].sort((a, b) => a - b)
  return `${s.length} writes, p50 ${ms(pct(s, 0.5))}, p99 ${ms(pct(s, 0.99))}, max ${ms(s[s.length - 1] ?? NaN)}, errors ${errors.length}${errors.length > 0 ? ` (first: ${errors[0]})` : ''}`
}

async function main () {
  const t0 = performance.now()
  compose('up', '-d')
  const upMs = performance.now() - t0
  const services = compose('config', '--services').trim().split('\n')
  await until('every service healthy', async () => {
    const states = services.map((s) => {
      const id = compose('ps', '-q', s).trim()
      return id === '' ? 'missing' : execFileSync('docker', ['inspect', '--format', '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}', id], { encoding: 'utf8' }).trim()
    })
    if (!states.every((s) => s === 'healthy')) throw new Error(services.map((s, i) => `${s}=${states[i]}`).join(' '))
    return true
  }, 180_000)
  for (const [i, router] of ROUTERS.entries()) {
    await until(`a PUT through ${router}`, async () => (await call('PUT', `${router}/kv/compose-check-${i}`, 'hello')).status === 201, 60_000)
  }
  const healthyMs = performance.now() - t0
  log(`up -d returned after ${ms(upMs)}; every service healthy and a PUT answered through both routers after ${ms(healthyMs)}`)
  for (const [i, router] of ROUTERS.entries()) {
    const r = await call('GET', `${router}/kv/compose-check-${i}`)
    if (r.status !== 200 || r.text !== 'hello') throw new Error(`GET through ${router}: ${r.status} ${r.text}`)
  }
  const view = await until('3 groups, each a primary and an in-sync replica', async () => inSync(await cluster(ROUTERS[0])) ? await cluster(ROUTERS[0]) : undefined, 60_000)
  log(`GET /cluster: epoch ${view.epoch}, ${view.groups.map((g) => `${g.id} ${g.nodes.map((n) => `${n.url.replace('http://127.0.0.1:', ':')} ${n.role}`).join(' + ')}`).join('; ')}`)

  // Idle latency, then the same loop during a switchover.
  let loop = writeLoop(ROUTERS[0], 4)
  await sleep(3000)
  await loop.stop()
  log(`idle write loop (4 clients, router1): ${summary(loop.latencies, loop.errors)}`)
  loop = writeLoop(ROUTERS[0], 4)
  await sleep(1000)
  const swFrom = performance.now()
  const sw = await switchover(ROUTERS[1], 'g1')
  const swTo = performance.now()
  await sleep(1000)
  await loop.stop()
  log(`switchover of g1 through router2: ${ms(sw.ms)} (coordinator's tookMs ${sw.answer.tookMs}), ${sw.answer.from} -> ${sw.answer.to}, term ${sw.answer.term}`)
  log(`write loop during it (4 clients, router1, 1 s either side): ${summary(loop.latencies, loop.errors)}`)
  log(`  the writes that overlapped the switchover call: ${summary(loop.during(swFrom, swTo), loop.errors)}`)
  if (loop.errors.length > 0) throw new Error('writes failed during the switchover')
  await until('g1 back in sync', async () => inSync(await cluster(ROUTERS[0])), 30_000)

  // The leading coordinator dies.
  const lead = await until('a leading coordinator', leader, 30_000)
  const other = lead === 'coordinator1' ? 'coordinator2' : 'coordinator1'
  loop = writeLoop(ROUTERS[0], 4)
  await sleep(500)
  const killedAt = performance.now()
  execFileSync('docker', ['kill', compose('ps', '-q', lead).trim()], { stdio: 'ignore' })
  await until(`${other} leads`, async () => (await leader()) === other, 30_000)
  const ledAt = performance.now()
  await sleep(1000)
  await loop.stop()
  log(`docker kill ${lead} (leader): ${other} leads after ${ms(ledAt - killedAt)}`)
  log(`write loop across it (4 clients, router1): ${summary(loop.latencies, loop.errors)}`)
  log(`  the writes that overlapped the leaderless interval: ${summary(loop.during(killedAt, ledAt), loop.errors)}`)
  // A router reads the leader key every second: until then its relayed calls answer 503 (retried here).
  const g2 = primaryOf(await until('GET /cluster through router1 under the new leader', async () => await cluster(ROUTERS[0]), 15_000), 'g2')
  loop = writeLoop(ROUTERS[1], 4)
  const sw2 = await switchover(ROUTERS[0], 'g2')
  await sleep(1000)
  await loop.stop()
  log(`switchover of g2 through router1 under ${other}: ${ms(sw2.ms)} after the takeover was seen (includes the router's wait for the new leader), ${g2} -> ${sw2.answer.to}`)
  log(`write loop during it (4 clients, router2): ${summary(loop.latencies, loop.errors)}`)
  await until('every group in sync under the new leader', async () => inSync(await cluster(ROUTERS[1])), 30_000)
  // compose does not restart a container stopped by `docker kill`; start it again: it stands by.
  compose('start', lead)
  await until(`${lead} back as a standby`, async () => {
    const h = await fetch(`${COORDINATORS[lead]}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.json())
    return h.leader === false
  }, 30_000)
  log(`${lead} started again: a standby (/healthz leader:false)`)

  // A leader cut off from etcd (its container paused past the leader key's lease) is deposed: once it
  // runs again it drops its term and stands by in the same process; Docker restarts nothing.
  const paused = compose('ps', '-q', other).trim()
  const restarts = () => Number(execFileSync('docker', ['inspect', '--format', '{{.RestartCount}}', paused], { encoding: 'utf8' }).trim())
  const before = restarts()
  execFileSync('docker', ['pause', paused], { stdio: 'ignore' })
  const pausedAt = performance.now()
  await until(`${lead} leads while ${other} is paused`, async () => (await leader()) === lead, 30_000)
  log(`docker pause ${other} (leader): ${lead} leads after ${ms(performance.now() - pausedAt)}`)
  execFileSync('docker', ['unpause', paused], { stdio: 'ignore' })
  await until(`${other} deposed, a standby again`, async () => {
    const h = await fetch(`${COORDINATORS[other]}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.json())
    return h.leader === false
  }, 60_000)
  if (restarts() !== before) throw new Error(`${other} was restarted (RestartCount ${before} -> ${restarts()}): a deposed leader should stand by in-process`)
  log(`${other} unpaused: deposed, a standby again without a restart; ${lead} still leads: ${(await leader()) === lead}`)
  log('all checks passed')
}

let failed = false
try {
  await main()
} catch (err) {
  failed = true
  log(`FAILED: ${err.message}`)
  try { log(compose('ps')) } catch {}
} finally {
  if (down) {
    compose('down', '-v', '--remove-orphans')
    log('docker-compose down -v: containers, volumes and the network removed')
  }
}
process.exit(failed ? 1 : 0)
