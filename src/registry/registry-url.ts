/**
 * The `--registry` flag: `file` (the map in the coordinator's data dir, the default), or
 * `etcd://host:port[,host:port...]`, the client URLs of an etcd cluster's members (over
 * plain HTTP; etcd's JSON gateway). Parsed once at startup; a bad value is a usage error.
 */
export type RegistrySpec = { kind: 'file' } | { kind: 'etcd', endpoints: string[] }

export function parseRegistry (text: string): RegistrySpec {
  if (text === '' || text === 'file') return { kind: 'file' }
  const m = /^etcd:\/\/(.+)$/.exec(text)
  if (m === null) throw new Error(`--registry must be "file" or etcd://host:port[,host:port...], not ${JSON.stringify(text)}`)
  const endpoints = (m[1] as string).split(',').map((hostPort) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hostPort.trim())
    if (hp === null || Number(hp[2]) < 1 || Number(hp[2]) > 65535) throw new Error(`--registry: ${JSON.stringify(hostPort)} is not host:port`)
    return `http://${hp[1] as string}:${hp[2] as string}`
  })
  return { kind: 'etcd', endpoints }
}

/** A cluster's name in a shared registry (the etcd key prefix /shardkv/<name>/). */
export function validateClusterName (name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw new Error(`--registry-cluster must be 1-63 letters, digits, '.', '_' or '-', not ${JSON.stringify(name)}`)
  return name
}
