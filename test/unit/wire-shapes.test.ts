import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

/**
 * Wire bodies are declared once, in src/protocol (cluster-view.ts, node-answers.ts), and
 * imported by the router, the coordinator, the client, the bench, the scripts and the
 * tests. This fails when one of them is declared again elsewhere, as `GET /cluster` once
 * was ten times, drifting apart (the client's copy lacked inSyncReplicas and redundancy).
 */

const ROOT = join(__dirname, '..', '..')
const SHAPES = ['ClusterView', 'GroupView', 'NodeView', 'ShardHealth', 'NodeStats', 'StatsReply', 'HealthReport', 'ClusterViewNode']
const DECLARED = new RegExp(`\\b(?:interface|type)\\s+(?:Repl)?(${SHAPES.join('|')})\\b\\s*[={<]`)

function files (dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) files(full, out)
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full)
  }
  return out
}

t.test('the wire shapes are declared only in src/protocol', async (t) => {
  const found: string[] = []
  for (const dir of ['router', 'shards', 'src', 'bench', 'scripts', 'test']) {
    for (const file of files(join(ROOT, dir))) {
      const path = relative(ROOT, file)
      if (path.startsWith('src/protocol/')) continue
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        if (DECLARED.test(line)) found.push(`${path}:${i + 1}: ${line.trim()}`)
      })
    }
  }
  t.same(found, [])
})
