import type tap from 'tap'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { isAlive, waitUntilDead } from './cluster'
import { allowTestNetwork } from './http'

/**
 * Hosts for partition tests: network namespaces the test creates, each with one veth
 * into a private bridge in the root namespace (which holds the bridge's own address, so
 * the test process can reach every host, as a client on the same network would). A
 * partition is real: `cut(host)` takes the host's link down and its packets are dropped,
 * so peers see timeouts, not refusals; `block(a, b)` drops only what passes between two
 * hosts (iptables in a's namespace), for a partition that leaves both their other peers.
 * While the network is up, ./http.ts lets the test's clients reach its hosts.
 * Traffic stays between the test's own namespaces
 * and the bridge. Processes started in a host are killed by PID, and the namespaces
 * and the bridge are deleted by the test's teardown, even on failure.
 *
 * Needs root (CAP_NET_ADMIN) and iproute2 (`ip`); `netnsAvailable()` tells.
 */

export interface NetHost {
  /** The namespace's name. */
  name: string
  /** Its address on the test network. */
  ip: string
  /** Its veth end in the root namespace (on the bridge). */
  link: string
}

export interface TestNetwork {
  hosts: NetHost[]
  /** The root namespace's address on the bridge (where the test process is reached from). */
  gateway: string
  /** Starts a program inside a host (`ip netns exec`); stopped by PID at teardown. */
  spawn: (host: NetHost, command: string, args: string[]) => ChildProcess
  /** Cuts a host off the network (its link goes down: packets are dropped). */
  cut: (host: NetHost) => void
  heal: (host: NetHost) => void
  /**
   * A partition between two hosts only: every packet between `a` and `b` is dropped
   * (iptables DROP in a's namespace, both directions), while both keep talking to every
   * other host. Established connections go silent too (peers see timeouts, not refusals).
   */
  block: (a: NetHost, b: NetHost) => void
  unblock: (a: NetHost, b: NetHost) => void
}

export function netnsAvailable (): boolean {
  if (process.getuid?.() !== 0) return false
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Makes the host's namespace, its address on a veth pair, and plugs the outer end into the bridge. */
function plugIn (host: NetHost, bridge: string): void {
  const inner = `${host.link}i`.slice(0, 15)
  ip('netns', 'add', host.name)
  ip('link', 'add', host.link, 'type', 'veth', 'peer', 'name', inner)
  ip('link', 'set', inner, 'netns', host.name)
  ip('-n', host.name, 'addr', 'add', `${host.ip}/24`, 'dev', inner)
  ip('-n', host.name, 'link', 'set', inner, 'up')
  ip('-n', host.name, 'link', 'set', 'lo', 'up')
  ip('link', 'set', host.link, 'master', bridge)
  ip('link', 'set', host.link, 'up')
}

/** Adds (`-I`) or removes (`-D`) the two DROP rules between a and b, in a's namespace. */
function dropBetween (a: NetHost, b: NetHost, op: '-I' | '-D'): void {
  ip('netns', 'exec', a.name, 'iptables', op, 'INPUT', '-s', b.ip, '-j', 'DROP')
  ip('netns', 'exec', a.name, 'iptables', op, 'OUTPUT', '-d', b.ip, '-j', 'DROP')
}

/** A /24 in 10.213.0.0/16 that no interface of this machine uses yet. */
function freeSubnet (): number {
  const used = execFileSync('ip', ['-o', '-4', 'addr'], { encoding: 'utf8' })
  for (let tries = 0; tries < 50; tries++) {
    const x = randomInt(1, 255)
    if (!used.includes(` 10.213.${x}.`)) return x
  }
  throw new Error('no free 10.213.x.0/24 subnet for a test network')
}

/**
 * Lets frames between the bridge's own ports through the host firewall. Bridged traffic
 * passes iptables' FORWARD chain (br_netfilter), whose policy dockerd sets to DROP: without
 * this rule, on a machine that runs docker, the namespaces cannot reach each other.
 * `-I` inserts the rule (true when iptables is there to take it), `-D` deletes it.
 */
function forwardBetweenPorts (bridge: string, op: '-I' | '-D'): boolean {
  try {
    execFileSync('iptables', [op, 'FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export function startNetwork (t: tap.Test, opts: { hosts: number }): TestNetwork {
  const tag = `${process.pid % 10000}${randomInt(0, 1000)}`
  const subnet = freeSubnet()
  const bridge = `skvb${tag}`.slice(0, 15)
  const hosts: NetHost[] = []
  const procs: ChildProcess[] = []
  const blocked = new Map<string, [NetHost, NetHost]>()
  t.teardown(async () => {
    // The rules would go with the namespaces; removed first so a failed delete leaves none behind.
    for (const [a, b] of blocked.values()) {
      try { dropBetween(a, b, '-D') } catch { /* gone with its namespace */ }
    }
    const pids = procs.map((p) => p.pid).filter((pid): pid is number => pid !== undefined && isAlive(pid))
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await waitUntilDead(pids, 10_000).catch(() => undefined)
    for (const h of hosts) {
      // The pair goes with either end; deleting ours does not wait for the kernel to free the namespace.
      try { ip('link', 'del', h.link) } catch { /* not made, or gone with the namespace */ }
      try { ip('netns', 'del', h.name) } catch { /* not made */ }
    }
    try { ip('link', 'del', bridge) } catch { /* not made */ }
    if (forwarding) forwardBetweenPorts(bridge, '-D')
    forget()
  })
  const forget = allowTestNetwork(`10.213.${subnet}.`)
  ip('link', 'add', bridge, 'type', 'bridge')
  const forwarding = forwardBetweenPorts(bridge, '-I')
  ip('addr', 'add', `10.213.${subnet}.1/24`, 'dev', bridge)
  ip('link', 'set', bridge, 'up')
  for (let i = 0; i < opts.hosts; i++) {
    const host: NetHost = { name: `skvn${tag}h${i}`, ip: `10.213.${subnet}.${10 + i}`, link: `skv${tag}v${i}`.slice(0, 15) }
    hosts.push(host)
    plugIn(host, bridge)
  }
  return {
    hosts,
    gateway: `10.213.${subnet}.1`,
    spawn: (host, command, args) => {
      const p = spawn('ip', ['netns', 'exec', host.name, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      procs.push(p)
      return p
    },
    cut: (host) => { ip('link', 'set', host.link, 'down') },
    heal: (host) => { ip('link', 'set', host.link, 'up') },
    block: (a, b) => {
      const id = `${a.name}|${b.name}`
      if (blocked.has(id)) return
      blocked.set(id, [a, b])
      dropBetween(a, b, '-I')
    },
    unblock: (a, b) => {
      const id = `${a.name}|${b.name}`
      if (!blocked.delete(id)) return
      dropBetween(a, b, '-D')
    }
  }
}
