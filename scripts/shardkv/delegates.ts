import type { Command } from 'commander'
import { startLocal } from '../start-local'
import { addShard } from '../add-shard'
import { removeShard } from '../remove-shard'
import { replicaCommand } from '../replica'
import { switchover } from '../switchover'

/**
 * The subcommands that are the operator scripts themselves (`npm start`, `npm run
 * add-shard`, ...): their arguments go through untouched, so the options, the help text
 * and the behaviour are the scripts' own, and both spellings stay the same command.
 */

interface Delegate {
  name: string
  description: string
  run: (args: string[]) => Promise<number>
}

const shardkv = (command: string): string => `shardkv ${command}`

export const DELEGATES: readonly Delegate[] = [
  { name: 'start', description: 'start a local cluster in the foreground and supervise it (npm start)', run: async (args) => await startLocal(args, shardkv('start')) },
  { name: 'add-shard', description: 'add a shard group (starts its node) and rebalance onto it, showing progress', run: async (args) => await addShard(args, shardkv('add-shard')) },
  { name: 'remove-shard', description: 'drain a shard group out, showing progress, then stop its nodes', run: async (args) => await removeShard(args, shardkv('remove-shard')) },
  { name: 'add-replica', description: 'add a replica node to a group (starts it unless --url)', run: async (args) => await replicaCommand('add', args, shardkv) },
  { name: 'remove-replica', description: 'take a replica out of its group and stop its node', run: async (args) => await replicaCommand('remove', args, shardkv) },
  { name: 'replace-node', description: 'replace a replica whose disk is gone: remove it, add a fresh one', run: async (args) => await replicaCommand('replace', args, shardkv) },
  { name: 'failover', description: 'planned switchover: hand a group\'s primary role to an in-sync replica (--group g1 [--to URL])', run: async (args) => await switchover(args, shardkv('failover'), false) }
]

export function registerDelegates (program: Command, done: (code: number) => void): void {
  for (const d of DELEGATES) {
    program.command(d.name)
      .description(d.description)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[options...]')
      .addHelpText('after', `\nIts options: shardkv ${d.name} --help`)
      .action(async (_args: string[], _options: unknown, cmd: Command) => { done(await d.run(cmd.args)) })
  }
}
