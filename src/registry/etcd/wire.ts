/**
 * The shapes of etcd's v3 JSON gateway (grpc-gateway over etcdserverpb), as etcd 3.4
 * and later answer them: keys and values are base64, 64-bit integers are decimal
 * strings (lease ids exceed 2^53, so they stay strings here), and fields holding
 * their zero value are left out. Only what the registry uses is declared.
 */

export interface EtcdHeader {
  cluster_id?: string
  member_id?: string
  revision?: string
  raft_term?: string
}

export interface EtcdKeyValue {
  key: string
  value?: string
  create_revision?: string
  mod_revision?: string
  version?: string
  lease?: string
}

export interface EtcdRangeReply {
  header?: EtcdHeader
  kvs?: EtcdKeyValue[]
  count?: string
}

export interface EtcdCompare {
  key: string
  target: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE'
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'
  version?: string
  create_revision?: string
  mod_revision?: string
  value?: string
  lease?: string
}

export type EtcdRequestOp =
  | { request_put: { key: string, value: string, lease?: string } }
  | { request_range: { key: string, range_end?: string } }
  | { request_delete_range: { key: string, range_end?: string } }

export interface EtcdTxnReply {
  header?: EtcdHeader
  succeeded?: boolean
  responses?: Array<{ response_range?: EtcdRangeReply }>
}

export interface EtcdLeaseGrantReply {
  header?: EtcdHeader
  ID?: string
  TTL?: string
  error?: string
}

export interface EtcdWatchEvent {
  /** Absent for PUT (the enum's zero value). */
  type?: 'PUT' | 'DELETE'
  kv: EtcdKeyValue
}

export interface EtcdWatchReply {
  result?: {
    header?: EtcdHeader
    created?: boolean
    canceled?: boolean
    compact_revision?: string
    events?: EtcdWatchEvent[]
  }
  error?: { grpc_code?: number, message?: string }
}

/** An error answer of the gateway (HTTP 4xx/5xx). */
export interface EtcdErrorReply {
  error?: string
  message?: string
  code?: number
}

export function b64 (text: string | Buffer): string {
  return (typeof text === 'string' ? Buffer.from(text, 'utf8') : text).toString('base64')
}

export function unb64 (text: string | undefined): string {
  return text === undefined ? '' : Buffer.from(text, 'base64').toString('utf8')
}

/** The range end that makes a range request cover every key starting with `prefix`. */
export function prefixEnd (prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8')
  for (let i = bytes.length - 1; i >= 0; i--) {
    const byte = bytes[i] as number
    if (byte < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1))
      end[i] = byte + 1
      return end.toString('base64')
    }
  }
  // All 0xff (or empty): every key from the prefix on ("\0" means "to the end").
  return Buffer.from([0]).toString('base64')
}

/** A decimal-string integer of the gateway as a number (revisions stay far below 2^53). */
export function num (text: string | undefined): number {
  return text === undefined ? 0 : Number(text)
}
