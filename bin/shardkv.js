#!/usr/bin/env node
'use strict'
// The `shardkv` command of package.json `bin` (npx shardkv ... in a checkout). The code is
// TypeScript compiled by `npm run build`; this file only finds it, so that it can be
// executable in git (dist/ is not).
const { existsSync } = require('node:fs')
const { join } = require('node:path')
const entry = join(__dirname, '..', 'dist', 'scripts', 'shardkv.js')
if (!existsSync(entry)) {
  process.stderr.write(`shardkv: ${entry} is missing: run \`npm run build\` first\n`)
  process.exit(1)
}
require(entry).main(process.argv.slice(2)).then((code) => process.exit(code))
