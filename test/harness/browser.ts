import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type tap from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { isAlive, waitUntilDead } from './cluster'

/**
 * A real headless browser for tests of the dashboard: Debian's chromium (CI installs it,
 * .ci/run), started here as a child process with a fresh profile directory and driven over
 * the DevTools protocol by playwright-core. Starting it ourselves (rather than through
 * playwright's launcher) gives the teardown a PID: it closes the browser, then kills its
 * process group if anything is left, then removes its temp dir, whether the test passed,
 * failed or threw.
 */

export const CHROMIUM = process.env.SHARDKV_CHROMIUM ?? '/usr/bin/chromium'

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0'
]

/** Why browser tests cannot run here, or undefined when they can. */
export function browserMissing (): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (apt-get install -y chromium; CI installs it in .ci/run)`
}

export async function startBrowser (t: tap.Test): Promise<Browser> {
  // The profile, and every temp dir chromium makes for itself (TMPDIR: org.chromium.Chromium.*,
  // which it leaves behind when stopped), in one dir that the teardown removes.
  const root = mkdtempSync(join(tmpdir(), 'shardkv-chromium-'))
  const profile = join(root, 'profile')
  // Its own process group, so that the teardown can stop the renderers with it.
  const child = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, TMPDIR: root } })
  let browser: Browser | undefined
  t.teardown(async () => {
    await browser?.close().catch(() => undefined)
    const pid = child.pid
    if (pid !== undefined && isAlive(pid)) {
      try { process.kill(-pid, 'SIGTERM') } catch { /* gone */ }
      await waitUntilDead([pid], 5000).catch(() => {
        try { process.kill(-pid, 'SIGKILL') } catch { /* gone */ }
      })
    }
    rmSync(root, { recursive: true, force: true })
  })
  const endpoint = await new Promise<string>((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => reject(new Error(`chromium did not start within 30 s:\n${output}`)), 30_000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`chromium exited (${code}):\n${output}`)) })
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (output.length < 64 * 1024) output += chunk
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m[1] as string)
      }
    })
  })
  browser = await chromium.connectOverCDP(endpoint)
  return browser
}
