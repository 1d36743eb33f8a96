import { ROUTER_OPTIONS } from '../src/config/options'
import { runService } from '../src/supervision/service-main'
import { startRouter } from './server'

/** Entry point of a router: `node dist/router/main.js [options]`. */

void runService({
  service: 'router',
  command: 'node dist/router/main.js',
  summary: 'Start a router: the front door that forwards each key to the shard group that owns it, by the map its coordinator publishes.',
  options: ROUTER_OPTIONS,
  start: async (config, log) => {
    const r = await startRouter(config, log)
    return { url: r.url, close: r.close, reloadTokens: r.reloadTokens, logFields: { coordinator: config.coordinator } }
  }
})
