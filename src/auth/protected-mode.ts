import { BlockList, isIP } from 'node:net'

/**
 * Protected mode, after Redis's: a process asked to listen where other machines can
 * reach it, with no cluster secret or no tokens file, would hand the cluster to anyone on
 * that network (issue 8). Rather than start open, it refuses with one line that says
 * what to add. `--insecure` is the explicit way out (a trusted network, a benchmark).
 * Loopback stays open without credentials, so a developer's tests keep working.
 */

export interface ProtectedModeInput {
  /** The client (data) listener's address. */
  host: string
  /** The peer listener's address, when it differs from `host`. */
  peerHost?: string
  hasSecret: boolean
  hasTokens: boolean
  insecure: boolean
}

// node's BlockList does the address arithmetic (IPv6 spellings of ::1, IPv4-mapped addresses).
const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** Whether `host` can only be reached from this machine: 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost. */
export function isLoopbackHost (host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (h === 'localhost') return true
  const family = isIP(h)
  // Any other name may resolve to anything, and 0.0.0.0 / :: are every address: not loopback.
  if (family === 0) return false
  return LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6')
}

/** The one-line refusal (without the process's name), or undefined when the process may start. */
export function protectedModeRefusal (input: ProtectedModeInput): string | undefined {
  if (input.insecure) return undefined
  const exposed = [input.host, input.peerHost].filter((h): h is string => h !== undefined && !isLoopbackHost(h))
  if (exposed.length === 0) return undefined
  const missing = [input.hasSecret ? undefined : '--cluster-secret-file', input.hasTokens ? undefined : '--tokens-file']
    .filter((m): m is string => m !== undefined)
  if (missing.length === 0) return undefined
  return `refusing to listen on ${exposed[0] as string} without ${missing.join(' and ')} (protected mode: anyone who can ` +
    'reach it would own the cluster); give --cluster-secret-file and --tokens-file, listen on 127.0.0.1, or pass --insecure'
}
