import t from 'tap'
import { parseRegistry, validateClusterName } from '../../src/registry/registry-url'

t.test('--registry: file, or etcd:// with host:port members', async (t) => {
  t.same(parseRegistry(''), { kind: 'file' })
  t.same(parseRegistry('file'), { kind: 'file' })
  t.same(parseRegistry('etcd://127.0.0.1:2379'), { kind: 'etcd', endpoints: ['http://127.0.0.1:2379'] })
  t.same(parseRegistry('etcd://a.example:2379,10.0.0.2:2379,[::1]:2379'), { kind: 'etcd', endpoints: ['http://a.example:2379', 'http://10.0.0.2:2379', 'http://[::1]:2379'] })
  for (const bad of ['etcd', 'etcd://', 'etcd://host', 'etcd://host:0', 'etcd://host:70000', 'etcd://h:1,', 'zk://h:1', 'etcd://h:1/path', 'etcd://user@h:1']) {
    t.throws(() => parseRegistry(bad), /--registry/, `refused: ${bad}`)
  }
})

t.test('--registry-cluster names', async (t) => {
  for (const ok of ['shardkv', 'prod-eu.1', 'a']) t.equal(validateClusterName(ok), ok)
  for (const bad of ['', '-x', 'a/b', 'x'.repeat(64), 'é']) t.throws(() => validateClusterName(bad), /--registry-cluster/, `refused: ${JSON.stringify(bad)}`)
})
