import { connect, type Socket } from 'node:net'

/**
 * The smallest RESP2 client the redis peer needs (GET, SET, WATCH/MULTI/EXEC, CONFIG):
 * commands encoded as arrays of bulk strings, replies decoded incrementally from the
 * socket's chunks. One connection per load loop, one command (or one transaction's
 * commands) in flight at a time, like the closed loops of every other target. No npm
 * package: the encoder and decoder are pure and unit-tested.
 */

export type RespValue = string | number | Buffer | null | RespError | RespValue[]

/** An error reply (`-ERR ...`): a value, not a thrown error, inside an EXEC result. */
export class RespError extends Error {
  readonly code = 'ERR_BENCH_RESP'
  constructor (message: string) {
    super(message)
    this.name = 'RespError'
  }
}

const CRLF = '\r\n'

/** `*<n>\r\n` then `$<len>\r\n<bytes>\r\n` per argument. */
export function encodeCommand (args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}${CRLF}`)]
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a
    parts.push(Buffer.from(`$${b.length}${CRLF}`), b, Buffer.from(CRLF))
  }
  return Buffer.concat(parts)
}

/** Thrown for bytes that are not RESP: the connection cannot be trusted after it. */
export class RespProtocolError extends Error {
  readonly code = 'ERR_BENCH_RESP_PROTOCOL'
  constructor (message: string) {
    super(message)
    this.name = 'RespProtocolError'
  }
}

const NEED_MORE = Symbol('need more')

/**
 * Incremental decoder: push chunks, take whole replies. A reply split across chunks is
 * kept until its last byte arrives. Bulk strings come back as Buffers, simple strings as
 * strings, integers as numbers, nil (`$-1`, `*-1`) as null, errors as RespError values.
 */
export class RespDecoder {
  private buf: Buffer = Buffer.alloc(0)
  private pos = 0

  push (chunk: Buffer): void {
    this.buf = this.pos >= this.buf.length ? chunk : Buffer.concat([this.buf.subarray(this.pos), chunk])
    this.pos = 0
  }

  /** The replies complete so far, in order. */
  drain (): RespValue[] {
    const out: RespValue[] = []
    for (;;) {
      const start = this.pos
      const v = this.parse()
      if (v === NEED_MORE) {
        this.pos = start
        return out
      }
      out.push(v)
    }
  }

  private line (): string | typeof NEED_MORE {
    const end = this.buf.indexOf(CRLF, this.pos)
    if (end < 0) return NEED_MORE
    const s = this.buf.toString('latin1', this.pos, end)
    this.pos = end + 2
    return s
  }

  private parse (): RespValue | typeof NEED_MORE {
    if (this.pos >= this.buf.length) return NEED_MORE
    const type = String.fromCharCode(this.buf[this.pos] as number)
    this.pos++
    const l = this.line()
    if (l === NEED_MORE) return NEED_MORE
    switch (type) {
      case '+': return l
      case '-': return new RespError(l)
      case ':': return int(l)
      case '$': {
        const len = int(l)
        if (len < 0) return null
        if (this.buf.length < this.pos + len + 2) return NEED_MORE
        const b = this.buf.subarray(this.pos, this.pos + len)
        this.pos += len + 2
        return b
      }
      case '*': {
        const n = int(l)
        if (n < 0) return null
        const items: RespValue[] = []
        for (let i = 0; i < n; i++) {
          const v = this.parse()
          if (v === NEED_MORE) return NEED_MORE
          items.push(v)
        }
        return items
      }
      default:
        throw new RespProtocolError(`not a RESP reply: type byte ${JSON.stringify(type)}`)
    }
  }
}

function int (s: string): number {
  if (!/^-?\d+$/.test(s)) throw new RespProtocolError(`not a RESP integer: ${JSON.stringify(s)}`)
  return Number(s)
}

/** One connection: `send` writes commands together and resolves with their replies, in order. */
export class RespConnection {
  private readonly decoder = new RespDecoder()
  private waiting: { want: number, got: RespValue[], resolve: (v: RespValue[]) => void, reject: (e: Error) => void } | undefined
  private failed: Error | undefined

  private constructor (private readonly socket: Socket) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      const w = this.waiting
      try {
        this.decoder.push(chunk)
        const replies = this.decoder.drain()
        if (w === undefined) return
        w.got.push(...replies)
        if (w.got.length >= w.want) {
          this.waiting = undefined
          w.resolve(w.got)
        }
      } catch (err) {
        this.fail(err as Error)
      }
    })
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('redis closed the connection')))
  }

  static open (host: string, port: number): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port })
      s.once('error', reject)
      s.once('connect', () => {
        s.off('error', reject)
        resolve(new RespConnection(s))
      })
    })
  }

  send (commands: ReadonlyArray<ReadonlyArray<string | Buffer>>): Promise<RespValue[]> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    if (this.waiting !== undefined) return Promise.reject(new Error('one request at a time per connection'))
    return new Promise((resolve, reject) => {
      this.waiting = { want: commands.length, got: [], resolve, reject }
      this.socket.write(commands.length === 1 ? encodeCommand(commands[0] ?? []) : Buffer.concat(commands.map(encodeCommand)))
    })
  }

  /** One command; an error reply is thrown. */
  async call (...args: Array<string | Buffer>): Promise<RespValue> {
    const [reply] = await this.send([args])
    if (reply instanceof RespError) throw reply
    return reply ?? null
  }

  close (): void {
    this.socket.destroy()
  }

  private fail (err: Error): void {
    this.failed ??= err
    const w = this.waiting
    this.waiting = undefined
    w?.reject(err)
  }
}

/** As many connections as loops: a loop takes one, uses it for one operation, gives it back. */
export class RespPool {
  private readonly idle: RespConnection[]
  private readonly queue: Array<(c: RespConnection) => void> = []

  private constructor (private readonly all: RespConnection[]) {
    this.idle = [...all]
  }

  static async open (host: string, port: number, size: number): Promise<RespPool> {
    const conns = await Promise.all(Array.from({ length: size }, () => RespConnection.open(host, port)))
    return new RespPool(conns)
  }

  async with<T> (fn: (c: RespConnection) => Promise<T>): Promise<T> {
    const c = this.idle.pop() ?? await new Promise<RespConnection>((resolve) => this.queue.push(resolve))
    try {
      return await fn(c)
    } finally {
      const next = this.queue.shift()
      if (next !== undefined) next(c)
      else this.idle.push(c)
    }
  }

  close (): void {
    for (const c of this.all) c.close()
  }
}
