import { isAbsolute, join, relative, sep } from 'node:path'
import type { LocalCredentials } from './credentials'
import type { LocalTlsFiles } from './certificates'
import type { ManagedCluster, ManagedProcess } from './managed-cluster'

/**
 * What `npm start` prints once its cluster is up: every process with its URL, peer port,
 * data dir and log, which coordinator leads (the control plane on etcd), the credentials,
 * and commands to try.
 */

/** What npm start gives its processes: the credentials files, and the TLS files with --tls. */
export type Credentials = LocalCredentials & { tls?: LocalTlsFiles }

/** ./data/g1 when under the working directory (what the user typed), else absolute. */
export function shown (path: string): string {
  const rel = relative(process.cwd(), path)
  if (rel === '') return '.'
  return rel.startsWith('..') || isAbsolute(rel) ? path : `.${sep}${rel}`
}

/** With the map in etcd: the coordinator that leads (undefined: none did within `waitedMs`). */
export interface LeaderLine {
  leader: ManagedProcess | undefined
  waitedMs: number
}

export function summary (cluster: ManagedCluster, dataDir: string, logDir: string, creds: Credentials | undefined, control?: LeaderLine): string {
  const rows = cluster.listed().map((p) => ({ name: p.name, url: p.url(), peer: p.peerPort, data: p.dataDir }))
  const nodes = cluster.listed().filter((p) => p.role === 'shard')
  const peerWidth = Math.max(...rows.map((r) => String(r.peer ?? '-').length))
  const urlWidth = Math.max(...rows.map((r) => r.url.length))
  const dataOf = (r: { data: string | undefined }): string => r.data === undefined ? '-' : shown(r.data)
  const dataWidth = Math.max(...rows.map((r) => dataOf(r).length))
  const nameWidth = Math.max(8, ...rows.map((r) => r.name.length))
  const groups = new Set(nodes.map((n) => n.entry?.group)).size
  const base = cluster.routerUrl
  // Double quotes: the shell runs $(cat ...) inside them, so the line works as printed.
  const auth = (creds === undefined ? '' : `-H "Authorization: Bearer $(cat ${shown(creds.adminTokenFile)})" `) +
    (creds?.tls === undefined ? '' : `--cacert ${shown(creds.tls.ca)} `)
  return [
    `shardkv local cluster is up (${groups} group${groups === 1 ? '' : 's'}, ${nodes.length} shard node${nodes.length === 1 ? '' : 's'}${control === undefined ? '' : `; the map in etcd, ${count(cluster, 'coordinator')} coordinators, ${count(cluster, 'router')} routers`})`,
    '',
    ...rows.map((r) => `  ${r.name.padEnd(nameWidth)} ${r.url.padEnd(urlWidth)}  peer ${String(r.peer ?? '-').padEnd(peerWidth)}  data ${dataOf(r).padEnd(dataWidth)}  log ${shown(join(logDir, `${r.name}.log`))}`),
    '',
    ...(control === undefined ? [] : leaderLines(control)),
    ...credentialLines(creds),
    'Try:',
    `  curl -i ${auth}-X PUT -H 'content-type: text/plain' --data-binary 'hello' ${base}/kv/greeting`,
    `  curl -i ${auth}${base}/kv/greeting`,
    `  curl -s ${auth}${base}/cluster`,
    '',
    ...(control === undefined
      ? ['A node, the coordinator or the router that dies is restarted (with back-off). add-shard / add-replica nodes join this cluster.',
          `Ctrl-C stops the router, the coordinator, then the shard nodes. Data stays in ${shown(dataDir)}.`]
      : ['A process that dies is restarted (with back-off; a coordinator once the leader lease has lapsed, as a standby).',
          'add-shard / add-replica nodes join this cluster.',
          `Ctrl-C stops the routers, the coordinators, the shard nodes, then etcd. Data stays in ${shown(dataDir)}.`])
  ].join('\n')
}

function count (cluster: ManagedCluster, role: ManagedProcess['role']): number {
  return cluster.listed().filter((p) => p.role === role).length
}

function leaderLines (c: LeaderLine): string[] {
  if (c.leader === undefined) return [`No coordinator leads yet (asked each one's /healthz for ${c.waitedMs / 1000} s): see their logs.`, '']
  return [`Leading coordinator: ${c.leader.name} (${c.leader.url()}); the others stand by and take over when it dies.`, '']
}

/**
 * Where the credentials are; the admin token itself only on the start that made it (the
 * file is its one copy: whoever runs \`npm start\` again reads it from there).
 */
function credentialLines (creds: Credentials | undefined): string[] {
  if (creds === undefined) return ['Credentials: none (--insecure).', '']
  const tls = creds.tls === undefined ? [] : [`TLS: every listener serves HTTPS; clients trust the local CA ${shown(creds.tls.ca)}.`]
  const lines = creds.createdAdminToken === undefined
    ? [`Admin token: in ${shown(creds.adminTokenFile)}.`]
    : [`Admin token (shown this once; kept in ${shown(creds.adminTokenFile)}, mode 0600):`, `  ${creds.createdAdminToken}`]
  return [...lines, `Cluster secret: ${shown(creds.clusterSecretFile)}. Client tokens: ${shown(creds.tokensFile)}.`, ...tls, '']
}
