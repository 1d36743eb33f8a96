import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PORT_BLOCK_SIZE, reservePortBlock } from '../harness/port-block'

/** Integration test files run in parallel; fixed-port clusters must not share ports. */

const lockOf = (base: number): string => join(tmpdir(), `shardkv-port-block-${(base - 10_000) / PORT_BLOCK_SIZE}.lock`)

t.test('a reserved block lies below the ephemeral range, is locked by this process and freed on release', async (t) => {
  const a = await reservePortBlock()
  const b = await reservePortBlock()
  t.teardown(() => { a.release(); b.release() })
  t.not(a.base, b.base, 'two reservations get different blocks')
  for (const block of [a, b]) {
    t.ok(block.base >= 10_000 && block.base + PORT_BLOCK_SIZE + 10_000 <= 32_768, `${block.base}: the block and its peer ports (+10000) are below 32768`)
    t.equal(readFileSync(lockOf(block.base), 'utf8'), String(process.pid), 'the lock names this process')
  }
  await t.rejects(reservePortBlock(async (base) => base === a.base), /no free block/, 'a block held by a live process is not taken')
  a.release()
  t.notOk(existsSync(lockOf(a.base)), 'released: the lock is gone')
})

t.test('a block whose lock names a process that is gone is taken over', async (t) => {
  const dead = spawnSync(process.execPath, ['-e', '0']).pid
  // Find a block nobody holds now and leave a stale lock on it, as a SIGKILLed test run would.
  const probe = await reservePortBlock()
  probe.release()
  writeFileSync(lockOf(probe.base), String(dead), { flag: 'wx' })
  const taken = await reservePortBlock(async (base) => base === probe.base)
  t.teardown(taken.release)
  t.equal(taken.base, probe.base)
  t.equal(readFileSync(lockOf(taken.base), 'utf8'), String(process.pid))
})

t.test('a block the caller refuses (a port in it is busy) is released and another tried', async (t) => {
  let refused: number | undefined
  const block = await reservePortBlock(async (base) => { if (refused === undefined) { refused = base; return false } return true })
  t.teardown(block.release)
  t.not(block.base, refused)
  t.notOk(existsSync(lockOf(refused ?? 0)) && readFileSync(lockOf(refused ?? 0), 'utf8') === String(process.pid), 'the refused block is not left locked by this process')
})
