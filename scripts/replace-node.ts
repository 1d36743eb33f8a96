import { runReplicaCommand } from './replica'

runReplicaCommand('replace')
