/**
 * The shape `npm start` gives on a first start, and the one the benchmarks call the
 * quick-start shape: two groups, each a primary and one replica, each node one process.
 *
 * Why two groups: on the 2-core machines shardkv is measured on, every group is two more
 * processes on the same cores, and the CPU a replicated write costs is the CPU of the
 * group commits and shipments it shares, divided by the writes sharing them — fewer
 * primaries see more writes each. Measured against three with `node dist/bench/run.js
 * --only ycsb --ycsb-systems shardkv --groups N` (the figures are in docs/benchmarks.md,
 * "The default shape: two groups"): more writes per second at less CPU per write, reads
 * level, and two processes fewer idle. One group was cheaper still, but a cluster of one group shards nothing:
 * the quick start would not show keys spread over groups, or a rebalance. A replica per
 * group is what makes a primary's death survivable; more replicas cost a third node per
 * group on the same cores.
 */
export const QUICK_START_SHAPE = { groups: 2, replicas: 1 } as const
