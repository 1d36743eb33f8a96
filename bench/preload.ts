import { Pool } from '../src/http/undici'
import cliProgress from 'cli-progress'
import { kvPath } from '../src/protocol/key'
import { createClient, KvError } from '../src/client'

/**
 * Writes the benchmark's keys through the router before measuring, so GETs hit real
 * rows and PUTs replace (not create) them. Bounded concurrency over one kept-alive
 * pool; any failed write aborts the benchmark, since numbers over a half-loaded
 * store would mislead.
 */

export function benchKey (i: number): string {
  // The "/" makes every request exercise key percent-encoding (%2F) end to end.
  return `bench/${i}`
}

export async function preload (baseUrl: string, keys: readonly string[], value: Buffer, concurrency = 64): Promise<void> {
  const pool = new Pool(baseUrl, { connections: concurrency })
  const bar = process.stdout.isTTY
    ? new cliProgress.SingleBar({ format: '  preload [{bar}] {value}/{total} keys', hideCursor: true }, cliProgress.Presets.shades_classic)
    : undefined
  bar?.start(keys.length, 0)
  let next = 0
  let done = 0
  let failed = false
  try {
    const writer = async (): Promise<void> => {
      while (next < keys.length && !failed) {
        const key = keys[next++] as string
        const res = await pool.request({
          origin: baseUrl,
          path: kvPath(key),
          method: 'PUT',
          body: value,
          headers: { 'content-type': 'application/octet-stream' }
        })
        const text = await res.body.text()
        if (res.statusCode !== 200 && res.statusCode !== 201) {
          failed = true // the other writers stop at their next key
          throw new Error(`preload: PUT ${kvPath(key)} answered ${res.statusCode}: ${text.slice(0, 300)}`)
        }
        done++
        bar?.update(done)
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, writer))
  } finally {
    bar?.stop()
    await pool.close()
  }
}

/**
 * Writes the keys through the router with the client's batches (`putMany` splits them
 * into requests the router accepts): the suite preloads a cluster per scenario, so this
 * is most of its set-up time. Any failed write aborts: numbers over a half-loaded store
 * would mislead.
 */
export async function preloadBatched (routerUrl: string, keys: readonly string[], value: Buffer, credentials: { token?: string, ca?: Buffer } = {}): Promise<void> {
  const client = createClient({ url: routerUrl, connections: 8, token: credentials.token, ca: credentials.ca })
  try {
    const results = await client.putMany(keys.map((key) => ({ key, value })))
    const bad = results.findIndex((r) => r instanceof KvError)
    if (bad >= 0) throw new Error(`preload: batch put of ${keys[bad] ?? '?'} failed: ${(results[bad] as KvError).message}`)
  } finally {
    await client.close()
  }
}
