import t from 'tap'
import { decideShape, localEtcdMembers, parseEtcdFlag, ShapeError, type EtcdShape, type ShapeFlags } from '../../src/local/control-shape'
import { coordinatorPolicy } from '../../src/local/etcd-plane'
import { PROCESS_RESTART_POLICY } from '../../src/supervision/restart-policy'

/** npm start's control plane: what the flags and the data dir's control-plane.json decide, one row each. */

const local: EtcdShape = { registry: 'etcd', cluster: 'local', members: localEtcdMembers(8080), coordinators: 2, routers: 2 }
const remote: EtcdShape = { registry: 'etcd', cluster: 'local', endpoints: ['http://10.0.0.1:2379'], coordinators: 2, routers: 1 }
const fresh = { fileMap: false, routerPort: 8080 }

const rows: Array<{ name: string, flags: ShapeFlags, recorded?: EtcdShape, fileMap?: boolean, shape?: EtcdShape | undefined, notices?: string[], error?: RegExp }> = [
  { name: 'no flags, no file: the file registry, as before', flags: {}, shape: undefined, notices: [] },
  { name: '--registry file: the same', flags: { registry: 'file' }, shape: undefined, notices: [] },
  { name: '--coordinators without etcd', flags: { coordinators: 2 }, error: /need --registry etcd/ },
  { name: '--registry etcd: three local members on router port + 100, 2 coordinators, 1 router', flags: { registry: 'etcd' }, shape: { ...local, routers: 1 }, notices: [] },
  { name: '--etcd implies etcd', flags: { etcd: ['http://10.0.0.1:2379'] }, shape: remote, notices: [] },
  { name: '--registry file --etcd', flags: { registry: 'file', etcd: ['http://10.0.0.1:2379'] }, error: /--etcd needs --registry etcd/ },
  { name: 'etcd over a file-registry map', flags: { registry: 'etcd' }, fileMap: true, error: /file registry.*another --data-dir/ },
  { name: 'a restart without flags runs the recorded shape', flags: {}, recorded: local, shape: local, notices: [] },
  { name: 'a restart with --registry file is refused', flags: { registry: 'file' }, recorded: local, error: /map is in etcd/ },
  { name: 'a restart with another --etcd is refused', flags: { etcd: ['http://10.0.0.2:2379'] }, recorded: remote, error: /would start with an empty one/ },
  { name: 'a restart with --etcd over local members is refused', flags: { etcd: ['http://10.0.0.1:2379'] }, recorded: local, error: /members this launcher runs/ },
  { name: 'a restart with the same --etcd is fine', flags: { etcd: ['http://10.0.0.1:2379'] }, recorded: remote, shape: remote, notices: [] },
  { name: 'a restart with other counts takes them and says so', flags: { coordinators: 3, routers: 1 }, recorded: local, shape: { ...local, coordinators: 3, routers: 1 }, notices: ['3 coordinators now (were 2); kept in control-plane.json', '1 routers now (were 2); kept in control-plane.json'] }
]

for (const row of rows) {
  t.test(row.name, async (t) => {
    const decide = (): ReturnType<typeof decideShape> => decideShape(row.flags, row.recorded, { ...fresh, fileMap: row.fileMap ?? false })
    if (row.error !== undefined) {
      t.throws(decide, row.error)
      let thrown: unknown
      try { decide() } catch (err) { thrown = err }
      t.ok(thrown instanceof ShapeError, 'a ShapeError: one line for the operator')
      return
    }
    const got = decide()
    t.same(got.shape, row.shape)
    t.same(got.notices, row.notices)
  })
}

t.test('local members: e0..e2 on router port + 100..105, peer right above client', async (t) => {
  t.same(localEtcdMembers(9000).map((m) => [m.name, m.clientPort, m.peerPort]), [['e0', 9100, 9101], ['e1', 9102, 9103], ['e2', 9104, 9105]])
})

t.test('--etcd values', async (t) => {
  t.same(parseEtcdFlag('http://127.0.0.1:2379,10.0.0.2:2379'), ['http://127.0.0.1:2379', 'http://10.0.0.2:2379'])
  t.throws(() => parseEtcdFlag('https://h:2379'), /plain HTTP/)
  t.throws(() => parseEtcdFlag('h'), /host:port/)
})

t.test('a coordinator is restarted after the leader lease has lapsed, so a standby takes over first', async (t) => {
  const p = coordinatorPolicy(PROCESS_RESTART_POLICY)
  t.ok(p.firstDelayMs > 3000 && p.baseDelayMs > 3000, `first ${p.firstDelayMs} ms, then ${p.baseDelayMs} ms`)
  t.equal(p.giveUpAfter, PROCESS_RESTART_POLICY.giveUpAfter, 'the crash-loop limit stays')
})
