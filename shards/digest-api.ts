import type { FastifyInstance } from 'fastify'
import { jsonBody, integer } from '../src/http/json-body'
import { ShardKvError } from '../src/protocol/errors'
import { DIGEST_MAX_ROWS, DIGEST_PAGE_ROWS, DIGEST_PATH, type WireDigestPage } from '../src/protocol/digest'
import { DigestReader } from '../src/storage/digest'
import type { KvStore } from '../src/storage/store'
import type { OwnershipCache } from './ownership-cache'

/**
 * `POST /internal/digest` (peer API): a digest of one page of this node's rows and the
 * rows among them its installed map gives to another group, for `shardkv check`
 * (src/protocol/digest.ts). Read-only, and bounded by `limit` rows per call.
 */
export function registerDigestApi (app: FastifyInstance, ctx: { store: KvStore, ownership: OwnershipCache }): void {
  const reader = new DigestReader(ctx.store)
  app.post(DIGEST_PATH, (request, reply) => {
    const body = jsonBody(request)
    if (typeof body.after !== 'string') throw new ShardKvError('invalid_request', 'after (a key, or "" for the start) is required')
    if (body.until !== undefined && typeof body.until !== 'string') throw new ShardKvError('invalid_request', 'until must be a key')
    const limit = integer(body.limit, 'limit', 1, DIGEST_MAX_ROWS, DIGEST_PAGE_ROWS)
    const ownership = ctx.ownership.get()
    const page = reader.page(body.after, body.until, limit, (key) => ownership.access(key) === 'foreign')
    const answer: WireDigestPage = { epoch: ownership.epoch, ...page }
    return reply.send(answer)
  })
}
