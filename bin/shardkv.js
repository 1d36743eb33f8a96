#!/usr/bin/env node
'use strict'
// The `shardkv` command of package.json `bin` (npx shardkv ... in a checkout). The code is
// TypeScript compiled by `npm run build`; this file only finds it, so that it can be
// executable in git (dist/ is not).
//
// It also picks a role, as the container image's ENTRYPOINT: `shardkv node|router|coordinator
// ARGS` runs dist/<part>/main.js with ARGS in this very process (no child: signals from
// docker or the kubelet reach the part's own handlers, and a shard node's cluster workers
// fork dist/shards/main.js because argv[1] names it). `shardkv healthcheck` is the image's
// HEALTHCHECK: GET /healthz of the role running as PID 1, on the port its command line names.
// `shardkv prestop` is a shard node pod's preStop hook (deploy/kubernetes/): when the node is its
// group's primary, it asks for a planned switchover (`shardkv failover`) before the pod stops.
const { existsSync, readFileSync } = require('node:fs')
const { join } = require('node:path')

const DIST = join(__dirname, '..', 'dist')
const ROLES = { node: 'shards', router: 'router', coordinator: 'coordinator' }
// Defaults of --port per role (src/config/options.ts), for a healthcheck of a role started without one.
const DEFAULT_PORTS = { node: 7001, router: 8080, coordinator: 8090 }

function fail (line) {
  process.stderr.write(`${line}\n`)
  process.exit(1)
}

function runRole (role, args) {
  const entry = join(DIST, ROLES[role], 'main.js')
  if (!existsSync(entry)) fail(`shardkv ${role}: ${entry} is missing (this build has no ${role}; run \`npm run build\` on a version that has it)`)
  process.argv = [process.argv[0], entry, ...args]
  require(entry)
}

/** The value of `--name V` or `--name=V` in argv, else undefined. */
function flag (argv, name) {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name) return argv[i + 1]
    if (argv[i].startsWith(`${name}=`)) return argv[i].slice(name.length + 1)
  }
  return undefined
}

/** Where PID 1 (the container's role) answers /healthz: from its command line, env, or the role's default port. */
function healthUrl () {
  let argv = []
  try { argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0').filter((a) => a !== '') } catch {}
  const role = argv.find((a) => a in ROLES)
  const envPort = { node: 'SHARDKV_SHARD_PORT', router: 'SHARDKV_ROUTER_PORT', coordinator: 'SHARDKV_COORDINATOR_PORT' }[role]
  const port = flag(argv, '--port') ?? process.env[envPort] ?? DEFAULT_PORTS[role] ?? 8080
  const tls = flag(argv, '--tls-cert') !== undefined || process.env.SHARDKV_TLS_CERT !== undefined
  return `${tls ? 'https' : 'http'}://127.0.0.1:${port}/healthz`
}

/** GET url; calls back with (error) or (undefined, status, body). */
function get (url, done) {
  const lib = url.protocol === 'https:' ? require('node:https') : require('node:http')
  // A probe of the process on this very machine: the certificate is not what is checked here.
  const req = lib.get(url, { timeout: 4000, rejectUnauthorized: false }, (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (chunk) => { if (body.length < 65536) body += chunk })
    res.on('end', () => done(undefined, res.statusCode, body))
  })
  req.on('timeout', () => req.destroy(new Error('no answer within 4 s')))
  req.on('error', (err) => done(err))
}

function healthcheck (args) {
  const url = new URL(args[0] ?? healthUrl())
  get(url, (err, status) => {
    if (err !== undefined) fail(`shardkv healthcheck: ${url}: ${err.message}`)
    if (status !== 200) fail(`shardkv healthcheck: ${url} answered ${status}`)
    process.exit(0)
  })
}

/** A replica just stops; a primary first hands its role to an in-sync replica through the router. */
function prestop () {
  const url = new URL(healthUrl())
  get(url, (err, status, body) => {
    if (err !== undefined || status !== 200) fail(`shardkv prestop: ${url}: ${err !== undefined ? err.message : `answered ${status}`}; stopping without a switchover`)
    const health = JSON.parse(body)
    if (health.role !== 'primary') {
      process.stdout.write(`shardkv prestop: ${health.nodeId} is a ${health.role} of ${health.group}: nothing to hand off\n`)
      process.exit(0)
    }
    const router = process.env.SHARDKV_ROUTER_URL
    if (router === undefined || router === '') fail('shardkv prestop: SHARDKV_ROUTER_URL is not set; stopping without a switchover')
    // The token comes from $SHARDKV_TOKEN (scripts/auth.ts), set from the shardkv-admin Secret.
    runScripts(['failover', '--group', health.group, '--router', router])
  })
}

function runScripts (argv) {
  const entry = join(DIST, 'scripts', 'shardkv.js')
  if (!existsSync(entry)) fail(`shardkv: ${entry} is missing: run \`npm run build\` first`)
  require(entry).main(argv).then((code) => process.exit(code))
}

const [command, ...rest] = process.argv.slice(2)
if (command in ROLES) runRole(command, rest)
else if (command === 'healthcheck') healthcheck(rest)
else if (command === 'prestop') prestop()
else runScripts(process.argv.slice(2))
