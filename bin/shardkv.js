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

function healthcheck (args) {
  const url = new URL(args[0] ?? healthUrl())
  const lib = url.protocol === 'https:' ? require('node:https') : require('node:http')
  // Liveness of the process on this very machine: the certificate is not what is checked here.
  const req = lib.get(url, { timeout: 4000, rejectUnauthorized: false }, (res) => {
    res.resume()
    if (res.statusCode === 200) process.exit(0)
    fail(`shardkv healthcheck: ${url} answered ${res.statusCode}`)
  })
  req.on('timeout', () => req.destroy(new Error('no answer within 4 s')))
  req.on('error', (err) => fail(`shardkv healthcheck: ${url}: ${err.message}`))
}

const [command, ...rest] = process.argv.slice(2)
if (command in ROLES) {
  runRole(command, rest)
} else if (command === 'healthcheck') {
  healthcheck(rest)
} else {
  const entry = join(DIST, 'scripts', 'shardkv.js')
  if (!existsSync(entry)) fail(`shardkv: ${entry} is missing: run \`npm run build\` first`)
  require(entry).main(process.argv.slice(2)).then((code) => process.exit(code))
}
