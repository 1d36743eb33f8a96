import type { RoutingTable } from './routing-table'

/**
 * How a batch is split under one routing table: the ops whose key settles on a group go to
 * that group's primary in one sub-batch; the ops whose key is still being handed over (an
 * unsettled rebalance moves it) go one by one through the single-key path, which knows
 * fallback reads and copy on touch. Pure: the router and the direct client both use it.
 */

export interface BatchPlan {
  /** Primary URL → indexes (into the planned list) of the ops it gets, in batch order. */
  byPrimary: Map<string, number[]>
  /** Indexes of ops on moving keys, to send one at a time. */
  single: number[]
  /** Indexes of ops whose key no group owns (an empty ring). */
  unowned: number[]
}

export function planBatch (table: RoutingTable, keys: readonly string[], indexes?: readonly number[]): BatchPlan {
  const plan: BatchPlan = { byPrimary: new Map(), single: [], unowned: [] }
  const todo = indexes ?? keys.map((_, i) => i)
  for (const i of todo) {
    const key = keys[i] as string
    const url = table.ownerOf(key)
    if (url === undefined) {
      plan.unowned.push(i)
    } else if (table.handoverSourceOf(key) !== undefined) {
      plan.single.push(i)
    } else {
      let list = plan.byPrimary.get(url)
      if (list === undefined) plan.byPrimary.set(url, list = [])
      list.push(i)
    }
  }
  return plan
}
