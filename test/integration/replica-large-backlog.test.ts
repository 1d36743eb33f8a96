import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startCluster } from '../harness/cluster'
import { primaryUrl, replicaCaughtUp } from '../harness/cluster-view'
import { compareReplica } from '../harness/replication'
import { pool } from '../harness/rebalance'

/**
 * A replica that joins behind a backlog of large values catches up. 90 values of
 * 1 MiB are more than one replication shipment may carry (a body past the replica's
 * 64 MiB internal limit would be refused with 413 on every retry, and the replica would
 * never catch up): the primary cuts its shipments by value bytes, not only by rows.
 */

const VALUES = 90
const VALUE_BYTES = 1024 * 1024

t.test('a new replica catches up on 90 MiB of 1 MiB values', async (t) => {
  const c = await startCluster(t, { name: 'large-backlog', groups: 1, replicas: 0 })
  let written = 0
  const keys = Array.from({ length: VALUES }, (_, i) => `big/${i}`)
  await pool(keys, 4, async (key) => {
    const value = randomBytes(VALUE_BYTES)
    const res = await c.http.request('PUT', `${c.routerUrl}/kv/${encodeURIComponent(key)}`, { body: value, headers: { 'content-type': 'application/octet-stream' } })
    if (res.status !== 201) throw new Error(`PUT ${key}: ${res.status} ${res.text().slice(0, 200)}`)
    written++
  })
  t.equal(written, VALUES, `${VALUES} values of 1 MiB written to g1 without a replica`)

  const replica = await c.addNode('g1', 'g1-r1')
  const added = await c.http.request('POST', `${c.routerUrl}/admin/groups/g1/replicas`, { body: JSON.stringify({ url: replica.url }), headers: { 'content-type': 'application/json' } })
  t.equal(added.status, 201, `replica added: ${added.status} ${added.text().slice(0, 200)}`)
  const view = await c.waitForView((v) => replicaCaughtUp(v, replica.url), 'the new replica caught up', 120_000)
  const cmp = await compareReplica(c.http, primaryUrl(view, 'g1'), replica.url, keys)
  t.equal(cmp.replica.position, cmp.primary.position, `the replica reached the primary's position ${cmp.primary.position}`)
  t.same(cmp.mismatches, [], 'and holds the same rows')
})
