import type { Dispatcher } from 'undici'
import { ShardKvError } from '../protocol/errors'

/**
 * Reads an upstream answer into memory, at most `maxBytes` of it (src/protocol/limits.ts).
 * Past the cap the connection is dropped and the caller gets a 502 `upstream_error`: a
 * peer or address that answers with an endless body costs a refused call, not the heap.
 */
export async function readCapped (res: Pick<Dispatcher.ResponseData, 'body' | 'headers'>, maxBytes: number, what: string): Promise<Buffer> {
  const tooLarge = (): ShardKvError => new ShardKvError('upstream_error', `${what}: the answer is larger than ${maxBytes} bytes`)
  const declared = Number(res.headers['content-length'])
  if (Number.isFinite(declared) && declared > maxBytes) {
    // Destroying an unread body makes it emit an abort error that no one else listens for.
    res.body.on('error', () => {})
    res.body.destroy()
    throw tooLarge()
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length
    // Leaving the loop by a throw ends the iteration, which destroys the body.
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks, size)
}
