/**
 * The leadership fence on shard nodes. Each coordinator command carries the fence of the
 * leadership it acts under (the etcd leader key's create revision, which only grows from
 * leader to leader; 0 with the file registry, where one coordinator is all there is). A
 * node keeps the highest fence it has accepted with its installed map and refuses older
 * ones, so a deposed coordinator that has not noticed yet (a pause, a partition from
 * etcd) can neither install a map, nor extend a primary's lease, nor hand a group over,
 * once the new leader has spoken to that node.
 */

export type FenceVerdict =
  | { ok: true, newer: boolean }
  | { ok: false, reason: string }

/** `claimed` absent or not a non-negative integer counts as 0 (a coordinator without a registry leadership). */
export function fenceOf (claimed: unknown): number {
  return typeof claimed === 'number' && Number.isSafeInteger(claimed) && claimed >= 0 ? claimed : 0
}

export function judgeFence (installed: number | undefined, claimed: number): FenceVerdict {
  const known = installed ?? 0
  if (claimed < known) return { ok: false, reason: `fence ${claimed} is older than ${known}: the coordinator sending it was deposed` }
  return { ok: true, newer: claimed > known }
}
