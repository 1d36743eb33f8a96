import { COORDINATOR_OPTIONS } from '../src/config/options'
import { runService } from '../src/supervision/service-main'
import { startCoordinator } from './server'

/** Entry point of a coordinator: `node dist/coordinator/main.js [options]`. */

void runService({
  service: 'coordinator',
  command: 'node dist/coordinator/main.js',
  summary: 'Start a coordinator: the control plane that keeps the cluster map, checks nodes, fails over and rebalances.',
  options: COORDINATOR_OPTIONS,
  start: async (config, log) => {
    // A deposed leader stands by again in-process (also when deposed while its term starts);
    // only a term that cannot stop, or cannot start while it leads, ends the process (exit 3),
    // and its supervisor starts it again as a candidate.
    const c = await startCoordinator(config, log, () => { process.exit(3) })
    return { url: c.url, close: c.close, reloadTokens: c.reloadTokens, logFields: { ...(c.peerUrl !== c.url ? { peerUrl: c.peerUrl } : {}), epoch: c.coordinator()?.epoch ?? null } }
  }
})
