import { openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isAlive } from './cluster-nodes'

/**
 * Fixed-port clusters (npm start's shape) need ports that stay free between the check and
 * the bind. Two things took them in CI: another test file's cluster picking an overlapping
 * range at the same moment, and the kernel handing a checked port to an outgoing
 * connection as its ephemeral source port (32768-60999 on Linux), where it stays taken for
 * as long as the connection is kept alive. So the blocks lie below the ephemeral range and
 * a test file reserves its block through a lock file that names its PID: a lock whose
 * process is gone (a SIGKILLed test run) is taken over.
 */

export const PORT_BLOCK_SIZE = 250
const FIRST_PORT = 10_000
/** Blocks 10000-19999; npm start's peer ports (+10000) land in 20000-29999, kept free of other fixed ports. */
const BLOCKS = 40

export interface PortBlock {
  /** The first port of the block; the block spans base .. base + PORT_BLOCK_SIZE - 1. */
  base: number
  release: () => void
}

function lockPath (block: number): string {
  return join(tmpdir(), `shardkv-port-block-${block}.lock`)
}

function tryLock (block: number): boolean {
  const path = lockPath(block)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let owner = NaN
    try { owner = Number(readFileSync(path, 'utf8')) } catch { continue }
    // A lock still being written reads empty: treat it as held.
    if (!Number.isInteger(owner) || owner <= 0 || isAlive(owner)) return false
    try { unlinkSync(path) } catch { /* another process took it over first */ }
  }
  return false
}

/** Reserves a free block for this process, in random order so parallel files rarely contend. */
export async function reservePortBlock (accept: (base: number) => Promise<boolean> = async () => true): Promise<PortBlock> {
  const order = [...Array(BLOCKS).keys()].sort(() => Math.random() - 0.5)
  for (const block of order) {
    if (!tryLock(block)) continue
    const release = (): void => { try { unlinkSync(lockPath(block)) } catch { /* already gone */ } }
    const base = FIRST_PORT + block * PORT_BLOCK_SIZE
    if (await accept(base)) return { base, release }
    release()
  }
  throw new Error(`no free block of ${PORT_BLOCK_SIZE} ports in ${FIRST_PORT}-${FIRST_PORT + BLOCKS * PORT_BLOCK_SIZE - 1}`)
}
