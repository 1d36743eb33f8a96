import { ROUTER_OPTIONS, SHARD_OPTIONS, type OptionTable } from '../src/config/options'

/**
 * Prints the README's configuration tables from the option tables themselves, so the
 * documentation cannot drift from the code: `npm run docs:config`.
 */
function table (options: OptionTable): string {
  const rows = ['| flag | environment variable | default | meaning |', '| --- | --- | --- | --- |']
  for (const spec of Object.values(options)) {
    const def = typeof spec.default === 'function' ? 'available parallelism' : Array.isArray(spec.default) || spec.default === '' ? '(none)' : `\`${String(spec.default)}\``
    const choices = spec.choices !== undefined ? ` One of ${spec.choices.map((c) => `\`${c}\``).join(', ')}.` : ''
    rows.push(`| \`--${spec.flag}\` | \`${spec.env}\` | ${def} | ${spec.help.replace(/\|/g, '\\|')}${choices} |`)
  }
  return rows.join('\n')
}

process.stdout.write(`### Shard node (\`node dist/shards/main.js\`)\n\n${table(SHARD_OPTIONS)}\n\n### Router (\`node dist/router/main.js\`)\n\n${table(ROUTER_OPTIONS)}\n`)
