import { runReplicaCommand } from './replica'

runReplicaCommand('add')
