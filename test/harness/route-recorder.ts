import { appendFileSync } from 'node:fs'
import { resolve } from 'node:path'

/**
 * Preloaded (`node --require`) into the processes a test starts, when
 * SHARDKV_ROUTE_LOG names a file prefix: every fastify instance the process creates
 * gets an onRoute hook that appends each route it registers (method, url) as one JSON
 * line to `<prefix>-<pid>`. So a test sees exactly the routes a real router registers,
 * without the router exporting them (test/integration/openapi.test.ts).
 *
 * It replaces fastify's exports in the module cache before the process's own code
 * requires it; the factory it puts there creates the instance with the real one.
 */

export function routeLogOf (prefix: string, pid: number): string {
  return `${prefix}-${pid}`
}

/** Where the compiled recorder is, for NODE_OPTIONS (tests run from source, processes from dist). */
export function recorderPath (): string {
  return __filename.endsWith('.js') ? __filename : resolve(__dirname, '..', '..', 'dist', 'test', 'harness', 'route-recorder.js')
}

const prefix = process.env.SHARDKV_ROUTE_LOG
if (prefix !== undefined && prefix !== '' && __filename.endsWith('.js')) {
  const id = require.resolve('fastify', { paths: [process.cwd(), __dirname] })
  const real = require(id) as (...args: unknown[]) => { addHook: (name: 'onRoute', hook: (route: { method: string | string[], url: string }) => void) => void }
  const file = routeLogOf(prefix, process.pid)
  const recording = (...args: unknown[]): unknown => {
    const app = real(...args)
    app.addHook('onRoute', (route) => {
      appendFileSync(file, JSON.stringify({ method: route.method, url: route.url }) + '\n')
    })
    return app
  }
  Object.assign(recording, real, { default: recording, fastify: recording })
  const cached = require.cache[id]
  if (cached !== undefined) cached.exports = recording
}
