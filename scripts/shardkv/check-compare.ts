import type { WireGroupDigest, WireNodeDigest } from '../../src/protocol/digest'

/**
 * What `shardkv check` concludes from one page of a group (src/protocol/digest.ts), as
 * pure functions (test/unit/cli-check.test.ts): a replica whose digest of the page's key
 * range differs from the primary's, a node holding rows its map gives to another group,
 * a node that judged by an older map, or one that did not answer.
 */

export type Finding =
  | { kind: 'mismatch', group: string, node: string, after: string, until: string | null, primaryRows: number, rows: number, near?: string }
  | { kind: 'foreign', group: string, node: string, role: string, count: number, sample: string[] }
  | { kind: 'stale-map', group: string, node: string, epoch: number, expected: number }
  | { kind: 'unreachable', group: string, node: string, error: string }
  /** A replica outside the in-sync set still catching up: its rows may differ for now, so they say nothing. */
  | { kind: 'behind', group: string, node: string, lag: number | null }

/** Findings that mean the data is inconsistent (exit 3); the rest mean the check could not tell (exit 1). */
export function isInconsistency (f: Finding): boolean {
  return f.kind === 'mismatch' || f.kind === 'foreign'
}

/** A replica's page differs from the primary's: another digest, another count, or rows past the primary's range end. */
export function differs (primary: WireNodeDigest, replica: WireNodeDigest): boolean {
  const p = primary.page
  const r = replica.page
  if (p === undefined || r === undefined) return false
  return r.digest !== p.digest || r.rows !== p.rows || !r.done
}

/** `outOfSync`: replicas not in the in-sync set (still catching up), whose differences are not inconsistencies. */
export function comparePage (page: WireGroupDigest, outOfSync: ReadonlyMap<string, number | null> = new Map()): Finding[] {
  const [primary, ...replicas] = page.nodes
  if (primary === undefined) return []
  const findings: Finding[] = []
  for (const n of page.nodes) {
    if (n.page === undefined) {
      findings.push({ kind: 'unreachable', group: page.group, node: n.url, error: n.error ?? 'no answer' })
      continue
    }
    if (n.page.epoch < page.epoch) findings.push({ kind: 'stale-map', group: page.group, node: n.url, epoch: n.page.epoch, expected: page.epoch })
    if (n.page.foreign > 0) findings.push({ kind: 'foreign', group: page.group, node: n.url, role: n.role, count: n.page.foreign, sample: n.page.foreignSample })
  }
  for (const r of replicas) {
    if (r.page === undefined || !differs(primary, r)) continue
    if (outOfSync.has(r.url)) {
      findings.push({ kind: 'behind', group: page.group, node: r.url, lag: outOfSync.get(r.url) ?? null })
    } else {
      findings.push({ kind: 'mismatch', group: page.group, node: r.url, after: page.after, until: page.until, primaryRows: primary.page?.rows ?? 0, rows: r.page.rows })
    }
  }
  return findings
}

/** Adds up findings of one group across pages: foreign counts summed per node, the rest kept. */
export function mergeFindings (all: readonly Finding[]): Finding[] {
  const out: Finding[] = []
  for (const f of all) {
    const same = f.kind === 'foreign' ? out.find((o) => o.kind === 'foreign' && o.node === f.node) : undefined
    if (same !== undefined && same.kind === 'foreign' && f.kind === 'foreign') {
      same.count += f.count
      same.sample = [...same.sample, ...f.sample].slice(0, 5)
    } else if (!out.some((o) => o.kind === f.kind && o.node === f.node && (f.kind === 'unreachable' || f.kind === 'stale-map' || f.kind === 'behind'))) {
      out.push({ ...f })
    }
  }
  return out
}

const keyText = (key: string): string => JSON.stringify(key)

/** One line for a finding, for the human output. */
export function describeFinding (f: Finding): string {
  switch (f.kind) {
    case 'mismatch': {
      const range = `keys after ${f.after === '' ? 'the start' : keyText(f.after)} ${f.until === null ? 'to the end' : `up to ${keyText(f.until)}`}`
      const counts = `${f.rows} rows there, ${f.primaryRows} on the primary`
      if (f.near === undefined) return `${f.node} (replica) differs from the primary in ${range}: ${counts}`
      return `${f.node} (replica) differs from the primary at ${keyText(f.near)} or just before it (${range}: ${counts})`
    }
    case 'foreign':
      return `${f.node} (${f.role}) holds ${f.count} row${f.count === 1 ? '' : 's'} its map gives to another group (e.g. ${f.sample.map(keyText).join(', ')})`
    case 'stale-map':
      return `${f.node} judged by the map of epoch ${f.epoch}, not ${f.expected}`
    case 'unreachable':
      return `${f.node} did not answer: ${f.error}`
    case 'behind':
      return `${f.node} (replica) is not in sync yet (lag ${f.lag ?? 'unknown'}): its rows were not compared; check again once it is`
  }
}
