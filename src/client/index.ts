/**
 * The shardkv client package: `createClient` (routed or direct mode), its types and
 * typed errors, and the admin client the scripts use.
 */
export { createClient, KvClient } from './kv-client'
export type { ClientMode, ClientOptions, ClientStats, PutOptions, DeleteOptions, PutItem, DeleteItem } from './kv-client'
export type { KvEntry, PutResult } from './results'
export { KvError, NotFoundError, PreconditionFailedError, ValueTooLargeError, UnavailableError, errorFromResponse } from './errors'
export { AdminClient } from './admin'
export type { ClusterView } from './admin'
export { jsonRequest } from './http'
export type { WatchChange, WatchEvent, WatchOptions } from './watch'
