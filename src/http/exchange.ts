import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher, Pool } from 'undici'

/**
 * One whole HTTP exchange through `dispatcher.dispatch`, for the hot paths of the router
 * (relaying to shard nodes) and the client.
 *
 * undici's `request()` wraps every response in a Readable stream (BodyReadable) inside
 * an AsyncResource, and `body.arrayBuffer()` then copies the bytes once more; for the
 * small values a key-value client moves, that machinery costs more CPU than the HTTP
 * exchange itself, and the client runs in the application's process. This handler keeps
 * the chunks as the parser delivers them (one chunk, the common case, is used as is)
 * and settles one promise. Timeouts (the pool's headersTimeout / bodyTimeout) and
 * errors are undici's own, so callers classify failures exactly as before.
 */

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

const EMPTY = Buffer.alloc(0)

class CollectHandler implements Dispatcher.DispatchHandler {
  private status = 0
  private headers: IncomingHttpHeaders = {}
  private first: Buffer | undefined
  private more: Buffer[] | undefined
  private length = 0
  private settled = false

  constructor (
    private readonly resolve: (res: RawResponse) => void,
    private readonly reject: (err: Error) => void
  ) {}

  onRequestStart (): void {
    // undici may start a request again (a pipelined retry): forget a partial answer.
    this.first = undefined
    this.more = undefined
    this.length = 0
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // A 1xx is informational; the final response follows on the same request.
    if (statusCode < 200) return
    this.status = statusCode
    this.headers = headers
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // The chunk is a view of the socket's read buffer, which Node does not reuse.
    if (this.first === undefined) this.first = chunk
    else (this.more ??= [this.first]).push(chunk)
    this.length += chunk.length
  }

  onResponseEnd (): void {
    if (this.settled) return
    this.settled = true
    const body = this.more !== undefined ? Buffer.concat(this.more, this.length) : this.first ?? EMPTY
    this.resolve({ status: this.status, headers: this.headers, body })
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.settled) return
    this.settled = true
    this.reject(err)
  }
}

/** Sends one request and resolves with the whole response; rejects with undici's error. */
export function exchange (dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // dispatch reports a synchronous refusal (a closed pool) through onResponseError too.
    dispatcher.dispatch(opts, new CollectHandler(resolve, reject))
  })
}

/** The kept-alive pool settings of every data-plane caller (router → shard, client → router or shard). */
export function poolOptions (connections: number, timeoutMs: number): Pool.Options {
  return {
    connections,
    // A failed-over node's sockets die with it; never queue behind a half-dead one.
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    // On a LAN a connect either works or is refused at once; a silent host is a retry.
    connect: { timeout: Math.min(1000, timeoutMs) }
  }
}
