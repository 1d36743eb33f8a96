import t from 'tap'
import { INTERNAL_REPLICATION } from '../../src/protocol/wire'
import { startCluster } from '../harness/cluster'
import { allReplicasInSync, groupOf, nodeView, replicaUrls, describeView } from '../harness/cluster-view'

/**
 * A replica the map does not list as in-sync is asked for again (issues 8 and 9:
 * shards/shipper.ts set `pending` on its first ask and never asked again, so once the
 * map lost the replica — an ask that failed, or an in-sync change it did not make — the
 * group stayed without a replica the coordinator may promote, and a later SIGKILL of its
 * primary blocked the failover). The replica first rejoins through an ask (after a
 * SIGKILL and a restart); then the map is made to drop it behind the primary's back, as
 * the probe in issue 8 did through the coordinator's in-sync endpoint.
 */

t.test('a caught-up replica that the map drops is asked for again and rejoins the in-sync set', async (t) => {
  const c = await startCluster(t, { name: 'in-sync-retry', groups: 1, replicas: 1 })
  let view = await c.waitForView(allReplicasInSync, 'the replica in sync', 40_000)
  const replica = c.byUrl(replicaUrls(view, 'g1')[0] as string)

  // The replica dies; a write makes the primary drop it through the coordinator; it comes
  // back, catches up, and the primary asks for it (the ask that leaves it pending).
  await c.killHard(replica)
  const dropped = c.http.put(c.routerUrl, 'isr/k1', 'v1', { 'content-type': 'text/plain' })
  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === false, 'the dead replica out of the in-sync set', 30_000)
  t.equal((await dropped).status, 201, 'the write is acknowledged once the replica is dropped')
  await c.restart(replica)
  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === true, 'the restarted replica in sync again', 30_000)
  t.pass(`rejoined through an ask: ${describeView(view)}`)

  // The map drops it without the primary asking (today anyone can make that change).
  const term = groupOf(view, 'g1').term
  const out = await c.http.request('POST', c.coordinator.url + INTERNAL_REPLICATION.inSync, {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ group: 'g1', url: replica.url, inSync: false, term })
  })
  t.equal(out.status, 200, `the map now lists the replica out of sync: ${out.text().slice(0, 200)}`)

  view = await c.waitForView((v) => nodeView(v, replica.url)?.inSync === true, 'the replica back in the in-sync set, asked for again', 30_000)
  t.pass(`asked again, the replica is in sync: ${describeView(view)}`)
  const put = await c.http.put(c.routerUrl, 'isr/k2', 'v2', { 'content-type': 'text/plain' })
  t.equal(put.status, 201, 'writes are acknowledged with the replica in the ack set')
})
