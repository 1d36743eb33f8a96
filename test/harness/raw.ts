import { connect, type Socket } from 'node:net'
import { assertLoopback } from './http'

/**
 * Raw bytes over a TCP socket, for requests an HTTP client would refuse to send:
 * huge headers, garbage request lines, bodies that do not match their
 * Content-Length. Resolves with whatever the server answered before it closed the
 * connection (or before the timeout).
 */

export interface RawResult {
  /** Status of the first response, or undefined if the server sent none. */
  status: number | undefined
  headers: Record<string, string>
  body: string
  /** Everything received. */
  raw: string
  /** The server closed the connection (as opposed to our timeout ending the wait). */
  closedByServer: boolean
  error?: string
}

export interface RawOptions {
  timeoutMs?: number
  /** Half-close our side after writing (the server sees EOF). Default false. */
  endAfterWrite?: boolean
  /** Destroy the socket this many ms after writing, without waiting for an answer. */
  destroyAfterMs?: number
  /** Stop reading once one complete response (by Content-Length) has arrived. Default true. */
  oneResponse?: boolean
}

function parse (raw: string): Pick<RawResult, 'status' | 'headers' | 'body'> {
  const end = raw.indexOf('\r\n\r\n')
  const head = end === -1 ? raw : raw.slice(0, end)
  const lines = head.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  let body = end === -1 ? '' : raw.slice(end + 4)
  const len = headers['content-length']
  if (len !== undefined) body = body.slice(0, Number(len))
  return { status: m === null ? undefined : Number(m[1]), headers, body }
}

function complete (raw: string): boolean {
  const end = raw.indexOf('\r\n\r\n')
  if (end === -1) return false
  const { headers } = parse(raw)
  const len = headers['content-length']
  if (len === undefined) return false
  return Buffer.byteLength(raw.slice(end + 4)) >= Number(len)
}

export function rawRequest (baseUrl: string, data: Buffer | string | Array<Buffer | string>, opts: RawOptions = {}): Promise<RawResult> {
  const u = assertLoopback(baseUrl)
  const timeoutMs = opts.timeoutMs ?? 5000
  const chunks = Array.isArray(data) ? data : [data]
  return new Promise((resolve) => {
    const received: Buffer[] = []
    let settled = false
    let closedByServer = false
    let error: string | undefined
    const socket: Socket = connect({ host: u.hostname, port: Number(u.port) })
    const finish = (): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const raw = Buffer.concat(received).toString('latin1')
      const result: RawResult = { ...parse(raw), raw, closedByServer }
      if (error !== undefined) result.error = error
      resolve(result)
    }
    const timer = setTimeout(finish, timeoutMs)
    socket.on('data', (d: Buffer) => {
      received.push(d)
      if (opts.oneResponse !== false && complete(Buffer.concat(received).toString('latin1'))) finish()
    })
    socket.on('end', () => { closedByServer = true; finish() })
    socket.on('close', () => { closedByServer = true; finish() })
    socket.on('error', (err: NodeJS.ErrnoException) => { error = `${err.code ?? ''} ${err.message}`; closedByServer = true; finish() })
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c)
      if (opts.endAfterWrite === true) socket.end()
      if (opts.destroyAfterMs !== undefined) setTimeout(finish, opts.destroyAfterMs)
    })
  })
}
