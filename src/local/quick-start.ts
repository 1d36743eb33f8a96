/**
 * The shape `npm start` gives on a first start, and the one the benchmarks call the
 * quick-start shape: two groups, each a primary and one replica, each node one process.
 *
 * Why two groups: on the 2-core machines shardkv is measured on, every group is two more
 * processes on the same cores, and the CPU a replicated write costs is the CPU of the
 * group commits and shipments it shares, divided by the writes sharing them — fewer
 * primaries see more writes each. Measured with `node dist/bench/run.js --only ycsb
 * --ycsb-systems shardkv --groups N` (docs/benchmarks.md, "The default shape: two
 * groups"): two groups against three wrote 17–81% more per second at 16 loops and 50–65%
 * more at 64, at 18–48% less server CPU per write, with reads unchanged, and two fewer
 * processes idle. One group was cheaper still, but a cluster of one group shards nothing:
 * the quick start would not show keys spread over groups, or a rebalance. A replica per
 * group is what makes a primary's death survivable; more replicas cost a third node per
 * group on the same cores.
 */
export const QUICK_START_SHAPE = { groups: 2, replicas: 1 } as const
