/**
 * Gateway entry point: `tsx gateway/main.ts` (or `npm start` via deploy/local/run.sh).
 *
 * Shutdown order on SIGTERM/SIGINT (documented in docs/api.md):
 *   1. stop accepting — new requests 503, /readyz 503, listener closed
 *   2. drain in-flight requests (up to CBMIR_SHUTDOWN_GRACE_MS), then close connections
 *   3. close clients — PACS agents, then registered close hooks (Redis, index)
 * A second signal exits at once.
 */
import { ConfigError, loadConfig } from '../core/config.js';
import { createLogger } from '../core/log.js';
import { loadModelManifest } from '../core/model-manifest.js';
import { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import { createVectorIndex } from '../core/index/factory.js';
import { createGateway } from './server.js';
import { attachStowIndexing } from './stow-indexing.js';
import { attachSimilar } from './similar.js';
import { attachSimilarHeatmap } from './similar-heatmap.js';
import { attachUi } from './ui.js';
import { attachVirtualRoot } from './virtual-root.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel, 'gateway');
  const gateway = createGateway(config, { logger: log });
  // Indexing side: the model version names the jobs; the index is only read here.
  const model = loadModelManifest(config.model);
  const enqueuer = new IndexEnqueuer(config.redisUrl, model.version);
  attachStowIndexing(gateway, enqueuer, log);
  const index = createVectorIndex(config);
  gateway.addReadinessCheck({ name: 'index', check: async () => void (await index.count()) });
  const similar = attachSimilar(gateway, { config, index, modelVersion: model.version, logger: log });
  attachSimilarHeatmap(gateway, {
    config,
    access: similar.access,
    uploads: similar.uploads,
    index,
    modelVersion: model.version,
    logger: log,
  });
  attachVirtualRoot(gateway, { config, index, search: similar.search, logger: log });
  attachUi(gateway, config);
  gateway.addCloseHook(() => enqueuer.close());
  gateway.addCloseHook(() => index.close());
  const addr = await gateway.listen();
  log.info({ host: addr.address, port: addr.port, pacs: config.pacs.url }, 'gateway listening');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'shutting down');
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
