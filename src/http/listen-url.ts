import type { AddressInfo } from 'node:net'

/** A URL a local client can connect to (an unspecified bind address becomes loopback). */
export function listenUrl (address: AddressInfo, tls = false): string {
  let host = address.address
  if (host === '0.0.0.0') host = '127.0.0.1'
  if (host === '::') host = '::1'
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`
}
