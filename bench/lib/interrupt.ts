/**
 * Stopping what a benchmark started when it is interrupted (Ctrl-C, a CI timeout's
 * SIGTERM, a closed terminal). Node's default for these signals is to exit at once,
 * skipping main()'s `finally`: the gateway and workers, the local stack's services
 * (started detached, so Ctrl-C never reaches them) and the temporary indices stayed
 * behind, and skewed whatever was measured next on the same cores.
 */

type Cleanup = () => unknown;

const cleanups: Cleanup[] = [];
const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
let installed = false;
let stopping = false;

/**
 * Run `fn` (awaited, latest registered first) if the process is interrupted before the
 * returned function is called. Cleanups must be safe to run twice: main()'s `finally`
 * may have begun the same work when the signal arrives.
 */
export function onInterrupt(fn: Cleanup): () => void {
  install();
  cleanups.push(fn);
  return () => {
    const i = cleanups.lastIndexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const [sig, code] of Object.entries(SIGNALS)) {
    process.on(sig, () => {
      if (stopping) {
        // A second Ctrl-C means "now": leave the rest rather than hang on a stuck stop.
        process.stderr.write(`${sig} again: exiting without waiting for the rest to stop\n`);
        process.exit(code);
      }
      stopping = true;
      process.stderr.write(`\n${sig}: stopping what this benchmark started (again to skip)\n`);
      void (async () => {
        for (const fn of cleanups.splice(0).reverse()) {
          try {
            await fn();
          } catch (err) {
            process.stderr.write(`a cleanup failed: ${(err as Error).message}\n`);
          }
        }
        process.exit(code);
      })();
    });
  }
}
