import { Agent, type Dispatcher } from '../../src/http/undici'
import { InvalidArgumentError, type Command } from 'commander'
import { AdminClient } from '../../src/client/admin'
import { jsonRequest } from '../../src/client/http'
import { ShardKvError } from '../../src/protocol/errors'
import { credentialHeaders } from '../../src/client/transport'
import { adminToken, clusterCa, routerUrl, TOKEN_ENV, type ConnectionValues } from '../auth'

/**
 * What the native `shardkv` subcommands (status, check, watch) share: the connection
 * options, read exactly like the operator scripts read them (scripts/auth.ts), and the
 * parsers of option values (pure; test/unit/cli-options.test.ts).
 */

export interface CommonOptions {
  router?: string
  token?: string
  ca?: string
  clusterDir: string
  json: boolean
}

/** Adds --router, --token, --ca, --cluster-dir and --json to a subcommand. */
export function withCommonOptions (cmd: Command): Command {
  return cmd
    .option('--router <url>', 'router to talk to (default http://127.0.0.1:8080; https when <cluster-dir>/tls/ca.pem exists)', parseRouterUrl)
    .option('--token <token>', `token to send (default: $${TOKEN_ENV}, else <cluster-dir>/admin-token when it exists)`)
    .option('--ca <file>', 'CA certificate (PEM) to trust an https router by (default: <cluster-dir>/tls/ca.pem when it exists)')
    .option('--cluster-dir <dir>', 'data dir of the local cluster run by shardkv start / npm start, where the defaults come from', 'data')
    .option('--json', 'print the result as JSON on stdout', false)
}

/** An http(s) URL without a trailing slash; anything else is a usage error. */
export function parseRouterUrl (value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidArgumentError('expected an http:// or https:// URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('expected an http:// or https:// URL')
  if (url.search !== '' || url.hash !== '') throw new InvalidArgumentError('expected a URL without a query or fragment')
  return value.replace(/\/+$/, '')
}

/** An integer from `min` to `max` (an option parser for commander). */
export function intOption (min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`)
    return Number(value)
  }
}

/** The router as a subcommand reaches it: the admin client, and JSON calls the client has no method for. */
export class Connection {
  readonly admin: AdminClient
  readonly routerUrl: string
  private readonly headers: Readonly<Record<string, string>>
  private readonly dispatcher: Dispatcher | undefined

  constructor (options: CommonOptions) {
    const values: ConnectionValues = { router: options.router, token: options.token, ca: options.ca, 'cluster-dir': options.clusterDir }
    const credentials = { token: adminToken(values.token, values['cluster-dir']), ca: clusterCa(values['cluster-dir'], values.ca) }
    this.routerUrl = routerUrl(values.router, values['cluster-dir'])
    this.admin = new AdminClient(this.routerUrl, credentials)
    this.headers = credentialHeaders(credentials)
    this.dispatcher = credentials.ca === undefined ? undefined : new Agent({ connect: { ca: credentials.ca } })
  }

  async post<T> (path: string, body: unknown, timeoutMs = 60_000): Promise<T> {
    return (await jsonRequest<T>(this.routerUrl + path, { method: 'POST', body, headers: this.headers, dispatcher: this.dispatcher, timeoutMs })).body
  }

  async close (): Promise<void> {
    await Promise.all([this.admin.close(), this.dispatcher?.close()])
  }
}

/** Runs `fn` with a connection made from the options, closing it after. */
export async function withConnection<T> (options: CommonOptions, fn: (c: Connection) => Promise<T>): Promise<T> {
  const c = new Connection(options)
  try {
    return await fn(c)
  } catch (err) {
    // A connection error of undici says where it failed, not what was being reached.
    const code = (err as { code?: unknown }).code
    if (!(err instanceof ShardKvError) && typeof code === 'string' && /^(E[A-Z]+|UND_ERR)/.test(code)) {
      throw new Error(`cannot reach the router at ${c.routerUrl}: ${(err as Error).message}`)
    }
    if (typeof code === 'string' && /CERT|UNABLE_TO_VERIFY/.test(code)) {
      throw new Error(`cannot trust the router at ${c.routerUrl}: ${(err as Error).message} (pass --ca FILE, or the --cluster-dir of a local --tls cluster)`)
    }
    throw err
  } finally {
    await c.close()
  }
}
