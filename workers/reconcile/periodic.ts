/**
 * The reconciler inside the worker process: one pass every CBMIR_RECONCILE_INTERVAL_S
 * (default 300 s; 0 turns it off), the first one shortly after start so that what
 * arrived while no worker ran is found without waiting a whole interval.
 *
 * Several worker processes may run: a Redis lock (SET NX PX, held for one interval)
 * lets one of them do a pass per interval, so N workers do not crawl the PACS N times.
 * Duplicate passes would be harmless (job ids dedupe), only wasteful.
 */
import type { Logger } from '../../core/log.js';
import { producerConnection, quiet } from '../../core/queue/redis.js';
import { describeSummary, Reconciler, type ReconcileDeps, type ReconcileSummary } from '../reconciler.js';

export interface PeriodicOptions {
  /** Redis holding the lock (the queue's Redis). */
  readonly redisUrl: string;
  readonly intervalS: number;
  /** Delay before the first pass (default 5 s). */
  readonly firstDelayMs?: number;
  readonly maxRequestsPerSecond?: number;
  readonly log: Logger;
  /** Called after each pass (metrics, tests). */
  readonly onPass?: (summary: ReconcileSummary) => void;
}

export interface PeriodicReconciler {
  stop(): Promise<void>;
}

export function startPeriodicReconciler(deps: ReconcileDeps, opts: PeriodicOptions): PeriodicReconciler {
  const reconciler = new Reconciler(deps);
  const abort = new AbortController();
  const lockKey = `cbmir-reconcile-lock:${deps.enqueuer.queue.name}:${deps.enqueuer.modelVersion}`;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const lockConn = quiet(producerConnection(opts.redisUrl));

  const pass = async (): Promise<void> => {
    try {
      const got = await lockConn.set(lockKey, String(process.pid), 'PX', Math.max(1_000, opts.intervalS * 1000 - 500), 'NX');
      if (got !== 'OK') {
        opts.log.debug('reconciler: another worker holds this interval');
        return;
      }
      const summary = await reconciler.run({
        source: 'reconciler',
        signal: abort.signal,
        ...(opts.maxRequestsPerSecond ? { maxRequestsPerSecond: opts.maxRequestsPerSecond } : {}),
      });
      opts.log[summary.complete ? 'info' : 'warn']({ ...summary, studyErrors: summary.studyErrors.length }, `reconciler pass: ${describeSummary(summary)}`);
      opts.onPass?.(summary);
    } catch (err) {
      if (!abort.signal.aborted) opts.log.warn({ err: (err as Error).message }, 'reconciler pass failed; next pass at the next interval');
    }
  };

  const schedule = (ms: number) => {
    timer = setTimeout(() => {
      running = pass().finally(() => {
        running = undefined;
        if (!abort.signal.aborted) schedule(opts.intervalS * 1000);
      });
    }, ms);
    timer.unref();
  };
  schedule(opts.firstDelayMs ?? 5_000);

  return {
    async stop() {
      abort.abort();
      if (timer) clearTimeout(timer);
      await running;
      lockConn.disconnect();
    },
  };
}
