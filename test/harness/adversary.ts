import { connect, type Socket } from 'node:net'

/**
 * What a hostile or broken client does to a listener, on raw sockets (no HTTP client
 * would send this slowly or hold this much): header and body drips, connection floods.
 * Loopback only, bounded in time and count.
 */

function loopback (url: string): { hostname: string, port: number } {
  const { hostname, port } = new URL(url)
  if (hostname !== '127.0.0.1') throw new Error(`test traffic must go to 127.0.0.1 only, refused ${url}`)
  return { hostname, port: Number(port) }
}

export interface Drip { status: number | undefined, body: string, closedAfterMs: number }

/** Sends `head`, then one byte of `drip` every `everyMs` until the server closes the connection (or 20 s pass). */
export async function drip (url: string, head: string, drip: string, everyMs: number): Promise<Drip> {
  const { hostname, port } = loopback(url)
  return await new Promise((resolve) => {
    const started = Date.now()
    const socket = connect(port, hostname)
    let received = ''
    let i = 0
    const timer = setInterval(() => {
      if (i < drip.length && socket.writable) socket.write(drip[i++] as string)
    }, everyMs)
    const stop = setTimeout(() => socket.destroy(), 20_000)
    const done = (): void => {
      clearInterval(timer)
      clearTimeout(stop)
      const m = /^HTTP\/1\.1 (\d{3})/.exec(received)
      resolve({ status: m === null ? undefined : Number(m[1]), body: received.slice(received.indexOf('\r\n\r\n') + 4), closedAfterMs: Date.now() - started })
    }
    socket.on('data', (d) => { received += d.toString('latin1') })
    socket.on('close', done)
    socket.on('error', () => undefined)
    socket.on('connect', () => socket.write(head))
  })
}

/** Opens `n` idle connections; resolves with how many the server closed within `waitMs`. */
export async function flood (url: string, n: number, waitMs: number): Promise<{ sockets: Socket[], closedByServer: number }> {
  const { hostname, port } = loopback(url)
  const sockets: Socket[] = []
  let closed = 0
  await Promise.all(Array.from({ length: n }, async () => await new Promise<void>((resolve) => {
    const s = connect(port, hostname)
    sockets.push(s)
    s.on('connect', () => resolve())
    s.on('error', () => resolve())
    s.on('close', () => { closed++; resolve() })
  })))
  await new Promise((resolve) => setTimeout(resolve, waitMs))
  return { sockets, closedByServer: closed }
}
