import { isMainThread, parentPort } from 'node:worker_threads'

/**
 * Signals for a part that runs as a worker thread (src/local/runner.ts): the OS delivers
 * signals to processes, never to a thread, so the launcher posts this message instead
 * and the part handles it as it would the signal.
 */

const THREAD_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const
export type ThreadSignal = typeof THREAD_SIGNALS[number]

interface ThreadSignalMessage {
  type: 'shardkv:signal'
  signal: ThreadSignal
}

export function threadSignal (sig: NodeJS.Signals): ThreadSignalMessage {
  if (!(THREAD_SIGNALS as readonly string[]).includes(sig)) throw new Error(`a thread cannot be sent ${sig}`)
  return { type: 'shardkv:signal', signal: sig as ThreadSignal }
}

/** Runs `handler` on the signal, whether this part runs as a process or as a thread. */
export function onSignal (sig: ThreadSignal, handler: (sig: ThreadSignal) => void): void {
  process.on(sig, () => handler(sig))
  if (isMainThread || parentPort === null) return
  parentPort.on('message', (m: unknown) => {
    const msg = m as Partial<ThreadSignalMessage> | null
    if (msg?.type === 'shardkv:signal' && msg.signal === sig) handler(sig)
  })
  // The part's servers keep the thread alive, not the wait for a signal.
  parentPort.unref()
}
