import t from 'tap'
import { areaOf, formatSummary, summarize, type CpuProfile } from '../../bench/profile-summary'

const frame = (functionName: string, url: string, lineNumber = 0): { functionName: string, url: string, lineNumber: number } => ({ functionName, url, lineNumber })

t.test('areas: packages, node, shardkv parts, V8 pseudo-frames', async (t) => {
  t.equal(areaOf(frame('request', 'file:///w/node_modules/undici/lib/api/api-request.js')), 'undici')
  t.equal(areaOf(frame('x', '/w/node_modules/@fastify/error/index.js')), '@fastify/error', 'scoped package')
  t.equal(areaOf(frame('x', '/w/node_modules/fastify/node_modules/pino/x.js')), 'fastify', 'the outermost package owns nested ones')
  t.equal(areaOf(frame('emit', 'node:events')), 'node internals')
  t.equal(areaOf(frame('forward', 'file:///w/dist/router/forward.js')), 'shardkv router')
  t.equal(areaOf(frame('decodeKeySegment', '/w/dist/src/protocol/key.js')), 'shardkv src/protocol')
  t.equal(areaOf(frame('(idle)', '')), '(idle)')
  t.equal(areaOf(frame('(garbage collector)', '')), '(gc)')
  t.equal(areaOf(frame('writev', '')), '(native)')
})

t.test('self time by area and function, weighted by sample time', async (t) => {
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(idle)', '') },
      { id: 2, callFrame: frame('forward', '/w/dist/router/forward.js', 33) },
      { id: 3, callFrame: frame('request', '/w/node_modules/undici/lib/api/api-request.js', 190) }
    ],
    // Sample i lasts timeDeltas[i + 1] µs.
    samples: [1, 2, 3, 2, 1],
    timeDeltas: [0, 1000, 2000, 3000, 4000, 0]
  }
  const s = summarize(profile)
  t.equal(s.totalMs, 10)
  t.equal(s.idleMs, 1 + 0, 'first and last samples are idle: 1 ms + 0 ms')
  t.same(s.byArea, [{ area: 'shardkv router', ms: 6 }, { area: 'undici', ms: 3 }, { area: '(idle)', ms: 1 }])
  t.same(s.byFunction[0], { fn: 'forward dist/router/forward.js:34', area: 'shardkv router', ms: 6 })
  const text = formatSummary(s)
  t.match(text, /busy 0\.0 s \(90\.0%\)/)
  t.match(text, /66\.7% {2}shardkv router/, 'shares are of busy time')
  t.notMatch(text, /\(idle\)/, 'idle is not listed as a cost')
})
