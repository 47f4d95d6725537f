/** Worker entry point: `tsx workers/main.ts` — same as `cbmir worker`. */
import { ConfigError, loadConfig } from '../core/config.js';
import { runWorkerProcess } from './worker-process.js';

try {
  await runWorkerProcess(loadConfig(process.env, { serves: false }));
} catch (err) {
  process.stderr.write(`${err instanceof ConfigError ? err.message : `worker failed to start: ${(err as Error).message}`}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
