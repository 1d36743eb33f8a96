import type { FastifyInstance } from 'fastify'
import type { Dispatcher } from 'undici'
import { jsonBody, integer } from '../src/http/json-body'
import { jsonRequest } from '../src/client/http'
import { ShardKvError } from '../src/protocol/errors'
import { CONTROL_ANSWER_MAX_BYTES } from '../src/protocol/limits'
import { ADMIN_DIGEST_PATH, DIGEST_MAX_ROWS, DIGEST_PAGE_ROWS, DIGEST_PATH, type WireDigestPage, type WireDigestRequest, type WireGroupDigest, type WireNodeDigest } from '../src/protocol/digest'
import type { ClusterMap } from '../src/membership/map'
import { peerDispatcher, type PeerCredentials } from '../src/auth/peer'
import type { NodeClient } from '../src/peer/node-client'
import { documented } from '../src/http/openapi'
import { CHECK_DIGEST_SCHEMA } from '../src/protocol/schemas'

/**
 * `POST /admin/check/digest` (admin): one page of a group's consistency check
 * (`shardkv check`, src/protocol/digest.ts). The router holds the peer credentials the
 * nodes' digest endpoint needs, so it reads the primary's next page and then each
 * replica's digest of exactly that key range; comparing them is the caller's business.
 * Only nodes of the map are asked, and each call reads a bounded page.
 */

export interface CheckContext {
  map: () => ClusterMap
  nodes: NodeClient
  credentials: PeerCredentials
}

const NODE_TIMEOUT_MS = 10_000

export function registerCheckRoute (app: FastifyInstance, ctx: CheckContext): void {
  const dispatcher = peerDispatcher(ctx.credentials, { connections: 4, keepAliveTimeout: 10_000 })
  app.addHook('onClose', async () => { await dispatcher.close() })

  app.post(ADMIN_DIGEST_PATH, documented(CHECK_DIGEST_SCHEMA), async (request, reply) => {
    const body = jsonBody(request)
    if (typeof body.group !== 'string') throw new ShardKvError('invalid_request', 'group is required')
    const after = body.after
    if (typeof after !== 'string') throw new ShardKvError('invalid_request', 'after (a key, or "" for the start) is required')
    const limit = integer(body.limit, 'limit', 1, DIGEST_MAX_ROWS, DIGEST_PAGE_ROWS)
    const map = ctx.map()
    const group = map.groups.find((g) => g.id === body.group)
    if (group === undefined) throw new ShardKvError('no_such_group', `group ${body.group} does not exist`)
    const primary = group.nodes.find((n) => n.role === 'primary')
    if (primary === undefined) throw new ShardKvError('unavailable', `group ${group.id} has no primary`)
    const ask = async (url: string, req: WireDigestRequest): Promise<WireDigestPage> => {
      const target = ctx.nodes.peerOf(url) ?? await ctx.nodes.probe(url)
      return (await jsonRequest<WireDigestPage>(target + DIGEST_PATH, { method: 'POST', body: req, dispatcher, timeoutMs: NODE_TIMEOUT_MS, maxBytes: CONTROL_ANSWER_MAX_BYTES })).body
    }
    let first: WireDigestPage
    try {
      first = await ask(primary.url, { after, limit })
    } catch (err) {
      throw new ShardKvError('unavailable', `the primary ${primary.url} of ${group.id} did not answer: ${(err as Error).message}`)
    }
    const until = first.done ? undefined : first.last
    // A replica with extra rows in the range shows as more rows, or as a page not done.
    const replicaLimit = Math.min(DIGEST_MAX_ROWS, 2 * limit + 1)
    const replicas = await Promise.all(group.nodes.filter((n) => n.role !== 'primary').map(async (n): Promise<WireNodeDigest> => {
      try {
        return { url: n.url, role: 'replica', page: await ask(n.url, { after, ...(until === undefined ? {} : { until }), limit: replicaLimit }) }
      } catch (err) {
        return { url: n.url, role: 'replica', error: (err as Error).message }
      }
    }))
    const answer: WireGroupDigest = { group: group.id, epoch: map.epoch, after, until: until ?? null, done: first.done, nodes: [{ url: primary.url, role: 'primary', page: first }, ...replicas] }
    return await reply.send(answer)
  })
}
