import { createClient, type KvClient } from '../src/client'
import { pick, type Operation } from './engine'

/** Operations through the shardkv client (src/client), for the direct-client measurements. */

/** readCoalesceMaxKeys 1: every get() is its own request (the client's default coalesces concurrent gets); likewise writes. */
export function directClient (routerUrl: string, connections: number, readCoalesceMaxKeys?: number, writeCoalesceMaxKeys?: number): KvClient {
  // One pool per node with as many connections as load loops: no request waits for a socket.
  return createClient({ url: routerUrl, mode: 'direct', connections, readCoalesceMaxKeys, writeCoalesceMaxKeys })
}

export function clientGet (client: KvClient, keys: readonly string[]): Operation {
  return async () => {
    await client.get(pick(keys))
    return 1
  }
}

export function clientPut (client: KvClient, keys: readonly string[], value: Buffer): Operation {
  const opts = { contentType: 'application/octet-stream' }
  return async () => {
    await client.put(pick(keys), value, opts)
    return 1
  }
}

export function clientMixed (client: KvClient, keys: readonly string[], value: Buffer, readFraction: number): Operation {
  const get = clientGet(client, keys)
  const put = clientPut(client, keys, value)
  return () => Math.random() < readFraction ? get() : put()
}
