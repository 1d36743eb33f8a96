import { runReplicaCommand } from './replica'

runReplicaCommand('remove')
