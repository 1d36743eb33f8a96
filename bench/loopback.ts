import { fork, type ChildProcess } from 'node:child_process'
import { connect, createServer, type Socket } from 'node:net'

/**
 * `node dist/bench/loopback.js [round trips, default 20000]`: what one message between
 * two Node processes costs on this machine — two processes ping-pong 100 bytes over
 * loopback TCP, one at a time, and each reports the CPU it spent per round trip.
 *
 * Why it is here: every hop of a shardkv request (client → router → primary → replica
 * and back) is such a message, and it wakes the process it reaches. On the 2-core
 * Firecracker VM the suite is measured on, an idle round trip costs each side about
 * 70 µs of CPU — several times what the same exchange costs on bare metal — and that
 * cost, not SQLite or JSON, sets how much CPU a replicated write takes at moderate
 * load (docs/benchmarks.md). Run it to read the other figures against your machine.
 */

const PAYLOAD = Buffer.alloc(100, 'x')

function cpuMicros (): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** The echo side: answers every chunk with itself, and its CPU when asked over IPC. */
function echo (): void {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    socket.on('data', (chunk) => socket.write(chunk))
  })
  server.listen(0, '127.0.0.1', () => {
    const address = server.address()
    process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 })
  })
  process.on('message', () => process.send?.({ cpu: cpuMicros() }))
  process.on('disconnect', () => process.exit(0))
}

async function ask<T> (child: ChildProcess, message: unknown): Promise<T> {
  return await new Promise((resolve) => {
    child.once('message', (m) => { resolve(m as T) })
    if (message !== undefined) child.send(message as string)
  })
}

async function pingPong (socket: Socket, roundTrips: number): Promise<void> {
  await new Promise<void>((resolve) => {
    let left = roundTrips
    socket.on('data', () => {
      if (--left === 0) resolve()
      else socket.write(PAYLOAD)
    })
    socket.write(PAYLOAD)
  })
}

async function main (): Promise<void> {
  const roundTrips = Number(process.argv[2] ?? 20_000)
  if (!Number.isSafeInteger(roundTrips) || roundTrips < 1) throw new Error('usage: node dist/bench/loopback.js [round trips]')
  const child = fork(__filename, ['--echo'])
  try {
    const { port } = await ask<{ port: number }>(child, undefined)
    const socket = connect(port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.setNoDelay(true)
    const childBefore = (await ask<{ cpu: number }>(child, 'cpu')).cpu
    const before = cpuMicros()
    const started = process.hrtime.bigint()
    await pingPong(socket, roundTrips)
    const wallUs = Number(process.hrtime.bigint() - started) / 1000
    const own = cpuMicros() - before
    const childCpu = (await ask<{ cpu: number }>(child, 'cpu')).cpu - childBefore
    socket.destroy()
    const per = (us: number): string => (us / roundTrips).toFixed(1)
    console.log(`loopback TCP, 100-byte ping-pong between two Node processes, ${roundTrips} round trips:`)
    console.log(`  ${per(wallUs)} µs per round trip; CPU per round trip: sender ${per(own)} µs, echo ${per(childCpu)} µs`)
  } finally {
    child.kill()
  }
}

if (process.argv[2] === '--echo') echo()
else main().catch((err: unknown) => { console.error((err as Error).message); process.exitCode = 1 })
