import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

/**
 * One error path (src/protocol/errors.ts): routes throw a ShardKvError and the central
 * handler in src/http/server.ts answers it. This test reads the source tree and fails
 * where an error answer is built by hand, so a new route cannot drift from the catalogue.
 * Each rule names the few files allowed to do what it forbids, and why.
 */

const ROOT = join(__dirname, '..', '..')
const DIRS = ['router', 'coordinator', 'shards', 'src']

interface Source { path: string, lines: string[] }

function sources (): Source[] {
  const out: Source[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        out.push({ path: relative(ROOT, full), lines: readFileSync(full, 'utf8').split('\n') })
      }
    }
  }
  for (const d of DIRS) walk(join(ROOT, d))
  return out
}

/** `where: line` for every line matching `pattern` in a file not in `allowed`. */
function offenders (pattern: RegExp, allowed: Set<string>, keep: (match: RegExpExecArray) => boolean = () => true): string[] {
  const found: string[] = []
  for (const { path, lines } of sources()) {
    if (allowed.has(path)) continue
    lines.forEach((line, i) => {
      if (/^\s*(\/\/|\*)/.test(line)) return
      const re = new RegExp(pattern.source, 'g')
      let m: RegExpExecArray | null
      while ((m = re.exec(line)) !== null) {
        if (keep(m)) found.push(`${path}:${i + 1}: ${line.trim()}`)
      }
    })
  }
  return found
}

t.test('no error body is an object literal outside the catalogue', async (t) => {
  // `{ error: 'not_found', ... }`: use errorObject / errorBody / codedResult / throw a ShardKvError.
  t.same(offenders(/\berror:\s*['"`][a-z_]+['"`]/, new Set(['src/protocol/errors.ts'])), [])
})

t.test('no route sets an error status by hand', async (t) => {
  const statuses = (m: RegExpExecArray): number[] => (m[1]?.match(/\b\d{3}\b/g) ?? []).map(Number)
  // Literal statuses on a reply are success statuses (`outcome.existed ? 200 : 201`);
  // errors get theirs from the catalogue.
  const literal = offenders(/\.(?:code|status)\(([^)]*)\)/, new Set(), (m) => statuses(m).some((s) => s >= 400))
  t.same(literal, [], 'no reply.code(4xx/5xx)')
  // A status with no literal at all (`err.status`) is the central handler's, or a relayed upstream answer.
  const RELAYS = new Set(['router/kv-routes.ts', 'router/control-relay.ts'])
  const computed = offenders(/\breply\.(?:code|status)\(([^)]*)\)/, new Set(['src/http/server.ts', ...RELAYS]), (m) => statuses(m).length === 0)
  t.same(computed, [], 'no reply.code(<computed>) outside the central handler and upstream relays')
})

t.test('raw responses are written only where fastify is bypassed on purpose', async (t) => {
  // The GET fast path (speed), the 100-continue refusal (before a body exists) and the
  // HTTP parser's client errors (before fastify): each builds bodies with errorBody. The
  // control relay pipes the coordinator's event stream itself (its status is the coordinator's).
  const RAW = new Set(['router/kv-fast-path.ts', 'router/expect-continue.ts', 'src/http/server.ts', 'router/control-relay.ts'])
  t.same(offenders(/\b(?:writeHead|socket\.end)\(/, RAW), [], 'no writeHead outside the raw paths')
  t.same(offenders(/\bstatusCode\s*=\s*[45]\d\d\b/, new Set()), [], 'no statusCode = 4xx/5xx')
})

t.test('the raw paths build their error bodies with the catalogue', async (t) => {
  for (const path of ['router/kv-fast-path.ts', 'router/expect-continue.ts']) {
    const text = readFileSync(join(ROOT, path), 'utf8')
    t.match(text, /errorBody\(|\.toBody\(\)/, `${path} uses errorBody or ShardKvError.toBody`)
    t.notMatch(text, /JSON\.stringify\(\{\s*error/, `${path} does not stringify an error literal`)
  }
})
