import { mkdirSync } from 'node:fs'
import type { BenchContext } from './context'
import { startDaemon, sleep, type Daemon } from './daemon'
import { anyFreePort } from '../src/local/ports'
import { RespConnection, RespError, RespPool } from './resp'
import type { YcsbStore } from './ycsb-workloads'

/**
 * redis as a YCSB peer: Debian's redis-server on a 127.0.0.1 port, durable the strictest
 * way it offers (append-only file, `appendfsync always`: every write is fsynced before it
 * is answered), no RDB snapshots, no replica; its files in the scenario's temp dir,
 * stopped by pid. Driven by the minimal RESP client of resp.ts, one connection per loop.
 */

export interface RedisPeer {
  host: string
  port: number
  daemon: Daemon
}

export async function startRedis (ctx: BenchContext, binary: string, dir: string): Promise<RedisPeer> {
  const host = '127.0.0.1'
  const port = await anyFreePort(host)
  mkdirSync(dir, { recursive: true })
  const daemon = startDaemon('redis-server', binary, [
    '--bind', host, '--port', String(port), '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', '',
    '--daemonize', 'no', '--protected-mode', 'no', '--logfile', ''
  ])
  ctx.trackOther(daemon)
  const deadline = Date.now() + 20_000
  for (;;) {
    if (daemon.exitCode() !== undefined) {
      await ctx.stop({ launched: [], others: [daemon] })
      throw new Error(`redis-server exited (code ${String(daemon.exitCode())}): ${daemon.output().trim().split('\n').slice(-5).join('\n')}`)
    }
    try {
      const c = await RespConnection.open(host, port)
      try {
        if (await c.call('PING') === 'PONG') break
      } finally {
        c.close()
      }
    } catch { /* not listening yet, or loading */ }
    if (Date.now() > deadline) {
      await ctx.stop({ launched: [], others: [daemon] })
      throw new Error('redis-server did not answer PING within 20 s')
    }
    await sleep(50)
  }
  return { host, port, daemon }
}

export class RedisStore implements YcsbStore {
  private constructor (private readonly pool: RespPool) {}

  static async open (host: string, port: number, connections: number): Promise<RedisStore> {
    return new RedisStore(await RespPool.open(host, port, connections))
  }

  /** Asserts appendfsync is what the table says it is. */
  async appendfsync (): Promise<string> {
    return await this.pool.with(async (c) => {
      const r = await c.call('CONFIG', 'GET', 'appendfsync')
      return Array.isArray(r) && Buffer.isBuffer(r[1]) ? r[1].toString() : '?'
    })
  }

  async insert (key: string, value: Buffer): Promise<void> {
    await this.pool.with(async (c) => {
      if (await c.call('SET', key, value) !== 'OK') throw new Error(`redis SET ${key} did not answer OK`)
    })
  }

  update (key: string, value: Buffer): Promise<void> {
    return this.insert(key, value)
  }

  async read (key: string): Promise<void> {
    await this.pool.with(async (c) => {
      if (await c.call('GET', key) === null) throw new Error(`redis: ${key} not found`)
    })
  }

  /**
   * WATCH, GET, then MULTI / SET / EXEC sent together: the write happens only if nobody
   * wrote the key since the WATCH (EXEC answers nil otherwise), as If-Match does for
   * shardkv and the mod_revision compare for etcd. Three round trips.
   */
  async readModifyWrite (key: string, value: Buffer): Promise<boolean> {
    return await this.pool.with(async (c) => {
      await c.call('WATCH', key)
      if (await c.call('GET', key) === null) {
        await c.call('UNWATCH')
        throw new Error(`redis: ${key} not found`)
      }
      const replies = await c.send([['MULTI'], ['SET', key, value], ['EXEC']])
      const bad = replies.find((r) => r instanceof RespError)
      if (bad !== undefined) throw bad as RespError
      return replies[2] !== null
    })
  }

  async close (): Promise<void> {
    this.pool.close()
  }
}
