import { createServer } from 'node:net'

/**
 * Port checks before starting a fixed-port cluster. A busy port would otherwise show
 * up as one child's EADDRINUSE stack trace after others had already started; checking
 * first lets the caller refuse with one clear sentence. (The child still reports
 * EADDRINUSE if another program grabs the port in between.)
 */
export function isPortFree (host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ host, port, exclusive: true }, () => {
      server.close(() => resolve(true))
    })
  })
}

/** A port the OS picks as free on `host` now (listen on 0, read it, close): another process may take it before it is used. */
export function anyFreePort (host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address()
      server.close(() => { typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('could not determine a free port')) })
    })
  })
}

export class PortBusyError extends Error {
  readonly code = 'ERR_SHARDKV_PORT_BUSY'
  constructor (readonly busy: Array<{ name: string, port: number }>, host: string) {
    super(`${busy.map((b) => `port ${b.port} (${b.name})`).join(', ')} on ${host} ${busy.length === 1 ? 'is' : 'are'} already in use`)
    this.name = 'PortBusyError'
  }
}

/** Throws PortBusyError naming every busy port (0 means "any free port" and is skipped). */
export async function assertPortsFree (host: string, wanted: ReadonlyArray<{ name: string, port: number }>): Promise<void> {
  const checks = await Promise.all(wanted.map(async (w) => ({ ...w, free: w.port === 0 || await isPortFree(host, w.port) })))
  const busy = checks.filter((c) => !c.free).map(({ name, port }) => ({ name, port }))
  if (busy.length > 0) throw new PortBusyError(busy, host)
}
