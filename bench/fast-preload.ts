import { Pool } from 'undici'
import { BATCH_PATH } from '../src/protocol/wire'
import type { BatchResult } from '../src/protocol/batch'
import { preload } from './preload'

/**
 * Writes the keys through the router in batches of `size` puts (the suite preloads a
 * cluster per scenario, so this is most of its set-up time), falling back to one PUT per
 * key when the router has no batch endpoint. Any failed write aborts: numbers over a
 * half-loaded store would mislead.
 */
export async function preloadKeys (routerUrl: string, keys: readonly string[], value: Buffer, size = 100, concurrency = 8): Promise<'batch' | 'single'> {
  const pool = new Pool(routerUrl, { connections: concurrency })
  const encoded = value.toString('base64')
  const chunks: string[][] = []
  for (let i = 0; i < keys.length; i += size) chunks.push(keys.slice(i, i + size))
  let next = 0
  let unsupported = false
  try {
    const writer = async (): Promise<void> => {
      while (next < chunks.length && !unsupported) {
        const chunk = chunks[next++] as string[]
        const ops = chunk.map((key) => ({ op: 'put', key, value: encoded, contentType: 'application/octet-stream' }))
        const res = await pool.request({ path: BATCH_PATH, method: 'POST', body: JSON.stringify({ ops }), headers: { 'content-type': 'application/json' } })
        const text = await res.body.text()
        if (res.statusCode === 404 || res.statusCode === 405) {
          unsupported = true
          return
        }
        if (res.statusCode !== 200) throw new Error(`preload: POST ${BATCH_PATH} answered ${res.statusCode}: ${text.slice(0, 300)}`)
        const results = (JSON.parse(text) as { results: BatchResult[] }).results
        const bad = results.findIndex((r) => r.status !== 200 && r.status !== 201)
        if (bad >= 0) throw new Error(`preload: batch put of ${chunk[bad] ?? '?'} answered ${JSON.stringify(results[bad])}`)
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, chunks.length) }, writer))
  } finally {
    await pool.close()
  }
  if (!unsupported) return 'batch'
  await preload(routerUrl, keys, value)
  return 'single'
}
