import { request, type Dispatcher } from '../../http/undici'

/**
 * Whether an etcd member answers `GET /health` with `{"health":"true"}` within
 * `timeoutMs`: it is reachable, has a leader and can serve (a member cut off from its
 * peers answers false, one cut off from us not at all).
 */
export async function etcdMemberHealthy (endpoint: string, timeoutMs: number, dispatcher?: Dispatcher): Promise<boolean> {
  try {
    const res = await request(`${endpoint}/health`, { ...(dispatcher !== undefined ? { dispatcher } : {}), headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
    const body = await res.body.json() as { health?: unknown }
    return res.statusCode === 200 && body.health === 'true'
  } catch {
    return false
  }
}
