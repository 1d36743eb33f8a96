import { createServer, connect, type Server, type Socket } from 'node:net'

/**
 * A TCP forwarder in front of a node, to cut it off from everyone who reaches it by its
 * map url (the coordinator's health checks, leases and map installs, the router's
 * data traffic, its replicas' view of it) while it keeps running. `partition()` turns
 * it into a black hole: bytes in either direction are dropped and new connections are
 * accepted and left unanswered, as on a network that silently loses packets.
 */
export class TcpProxy {
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private cut = false
  url = ''

  constructor (private readonly target: { host: string, port: number }) {
    this.server = createServer((client) => this.onConnection(client))
  }

  async listen (): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = this.server.address()
    if (address === null || typeof address !== 'object') throw new Error('proxy has no address')
    this.url = `http://127.0.0.1:${address.port}`
    return this.url
  }

  get partitioned (): boolean {
    return this.cut
  }

  partition (): void {
    this.cut = true
  }

  /** Forwards again; the connections that were black-holed are closed (their requests are lost). */
  heal (): void {
    this.cut = false
    for (const s of this.sockets) if ((s as Socket & { blackholed?: boolean }).blackholed === true) s.destroy()
  }

  private onConnection (client: Socket): void {
    this.sockets.add(client)
    client.on('close', () => this.sockets.delete(client))
    client.on('error', () => undefined)
    if (this.cut) {
      (client as Socket & { blackholed?: boolean }).blackholed = true
      client.resume() // read and drop
      return
    }
    const upstream = connect(this.target)
    this.sockets.add(upstream)
    upstream.on('close', () => { this.sockets.delete(upstream); client.destroy() })
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    // Forward chunk by chunk, dropping everything while partitioned (both directions).
    client.on('data', (d: Buffer) => {
      if (this.cut) { (client as Socket & { blackholed?: boolean }).blackholed = true; return }
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (this.cut) { (client as Socket & { blackholed?: boolean }).blackholed = true; return }
      client.write(d)
    })
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
