import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './local-launcher'

/** bin/shardkv.js: the `shardkv` command over dist/ (tests run after `npm run build`). */
export const SHARDKV_BIN = join(ROOT, 'bin', 'shardkv.js')

export interface CliRun { code: number | null, stdout: string, stderr: string }

/** Runs `shardkv ARGS` to its end; SIGKILLed (by its PID) past `timeoutMs`. */
export async function shardkv (args: string[], timeoutMs = 90_000): Promise<CliRun> {
  const child = spawn(process.execPath, [SHARDKV_BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { try { child.kill('SIGKILL') } catch {} }, timeoutMs)
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}
