/**
 * The reconciler inside the worker process: one pass every CBMIR_RECONCILE_INTERVAL_S
 * (default 300 s; 0 turns it off), the first one shortly after start so that what
 * arrived while no worker ran is found without waiting a whole interval.
 *
 * Several worker processes may run: a Redis lock (reconcile/pass-lock.ts: one interval,
 * extended while the pass runs) lets one of them do a pass per interval, so N workers
 * do not crawl the PACS N times. Duplicate passes would be harmless (job ids dedupe),
 * only N times the load on the PACS.
 *
 * Optional fast path (Orthanc only, CBMIR_RECONCILE_CHANGES_INTERVAL_S > 0): every few
 * seconds, the studies named by Orthanc's change feed (reconcile/orthanc-changes.ts) are
 * reconciled at once, so a C-STOREd series is searchable about StableAge seconds after
 * its last instance instead of up to one full interval later. Full and fast passes share
 * one rate limit (the feed's own requests included). With several worker processes, one
 * polls per interval (a lock beside the full pass's) from a cursor kept in Redis, so each
 * change is reconciled once, not once per process.
 */
import type { Logger } from '../../core/log.js';
import { producerConnection, quiet } from '../../core/queue/redis.js';
import type { OrthancChangeFeed } from './orthanc-changes.js';
import { takePassLock } from './pass-lock.js';
import { RateLimiter } from './rate-limiter.js';
import { describeSummary, Reconciler, type ReconcileDeps, type ReconcileSummary } from '../reconciler.js';

/** Changes behind the feed's head (or studies due) beyond which the fast path leaves them to the full crawl. */
const MAX_BACKLOG = 10_000;
/** Polls a due study may fail before it is left to the full crawl. */
const MAX_TRIES = 5;
/** The change feed's cursor and due studies outlive a month without workers, not more. */
const CURSOR_TTL_S = 30 * 24 * 3600;

export interface PeriodicOptions {
  /** Redis holding the lock (the queue's Redis). */
  readonly redisUrl: string;
  /** Full crawl every intervalS seconds; 0 = none (change feed only). */
  readonly intervalS: number;
  /** The change-feed fast path: poll every intervalS seconds. */
  readonly changes?: { readonly feed: OrthancChangeFeed; readonly intervalS: number };
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
  const limiter = new RateLimiter(opts.maxRequestsPerSecond ?? 10);
  let fastTimer: NodeJS.Timeout | undefined;
  let fastRunning: Promise<void> | undefined;

  const pass = async (): Promise<void> => {
    try {
      const lock = await takePassLock(lockConn, lockKey, Math.max(1_000, opts.intervalS * 1000 - 500), (err) =>
        opts.log.warn({ err: err.message }, 'reconciler: could not extend the pass lock'),
      );
      if (!lock) {
        opts.log.debug('reconciler: another worker holds this interval');
        return;
      }
      let summary: ReconcileSummary;
      try {
        summary = await reconciler.run({ source: 'reconciler', signal: abort.signal, limiter });
      } finally {
        lock.release();
      }
      opts.log[summary.complete ? 'info' : 'warn'](
        { ...summary, studyErrors: summary.studyErrors.length },
        `reconciler pass: ${describeSummary(summary)}`,
      );
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
  if (opts.intervalS > 0) schedule(opts.firstDelayMs ?? 5_000);

  // The change feed: from the shared cursor, else from now on (what came before is the full crawl's job).
  const changes = opts.changes;
  if (changes && changes.intervalS > 0) {
    let cursor: number | undefined;
    let warned = false;
    const cursorKey = `${lockKey}:changes-cursor`;
    const dueKey = `${lockKey}:changes-due`;
    /** Failed runs per due study. */
    const triesKey = `${lockKey}:changes-tries`;
    const fast = async (): Promise<void> => {
      try {
        const lock = await takePassLock(lockConn, `${lockKey}:changes`, Math.max(1_000, changes.intervalS * 1000 - 500), (err) =>
          opts.log.warn({ err: err.message }, 'reconciler change feed: could not extend its lock'),
        );
        if (!lock) return; // another worker process polls this interval
        try {
          // The shared cursor wins over this process's own (continuity across processes),
          // unless it is ahead of the feed (a PACS reset or replaced: its numbering restarted).
          const shared = await lockConn.get(cursorKey);
          if (shared !== null && Number.isSafeInteger(Number(shared))) cursor = Number(shared);
          await limiter.take(abort.signal);
          const head = await changes.feed.head();
          if (cursor === undefined || cursor > head) cursor = head;
          // After a long stop the backlog would be walked one rate-limited lookup per series
          // before any new change: the full crawl finds what happened meanwhile, so jump.
          else if (head - cursor > MAX_BACKLOG) {
            opts.log.info({ skipped: head - cursor }, 'reconciler change feed: backlog left to the full crawl');
            cursor = head;
          }
          const { studies: changed, last } = await changes.feed.poll(cursor, 1000, () => limiter.take(abort.signal));
          // The studies read are kept as due (with those a run left unfinished before) in the same
          // step that moves the cursor past them, and removed only once reconciled: a run that fails
          // or is killed half-way leaves them for the next poll, not for the next full crawl.
          const tx = lockConn.multi();
          if (changed.length > 0) tx.sadd(dueKey, ...changed).expire(dueKey, CURSOR_TTL_S);
          const written = await tx.set(cursorKey, String(last), 'EX', CURSOR_TTL_S).smembers(dueKey).exec();
          cursor = last;
          warned = false;
          let due = (written?.at(-1)?.[1] as string[] | undefined) ?? [];
          if (due.length > MAX_BACKLOG) {
            opts.log.warn({ due: due.length }, 'reconciler change feed: due studies left to the full crawl');
            await lockConn.del(dueKey, triesKey);
            due = [];
          }
          if (due.length === 0) return;
          // This poll's studies first: one that keeps failing must not hold back the changes after it.
          const fresh = new Set(changed);
          const studies = [...changed, ...due.filter((u) => !fresh.has(u))];
          // A study leaves the set as soon as it is reconciled (the reconciler's checkpoint), even
          // in a run that stops or fails later.
          const done: string[] = [];
          let summary: ReconcileSummary;
          try {
            summary = await reconciler.run({
              source: 'reconciler',
              studyUids: studies,
              signal: abort.signal,
              limiter,
              checkpoint: { has: () => false, markDone: (uid) => void done.push(uid) },
            });
          } finally {
            if (done.length > 0)
              await lockConn
                .multi()
                .srem(dueKey, ...done)
                .hdel(triesKey, ...done)
                .exec();
          }
          // A study that failed on its own is asked again, MAX_TRIES polls at most, then left to the
          // full crawl; one the run did not reach (it stopped) is not counted.
          const failed = summary.studyErrors.map((e) => e.study);
          if (failed.length > 0) {
            const tx = lockConn.multi();
            for (const u of failed) tx.hincrby(triesKey, u, 1);
            const counts = ((await tx.expire(triesKey, CURSOR_TTL_S).exec()) ?? []).slice(0, failed.length).map(([, n]) => Number(n));
            const given = failed.filter((_, i) => (counts[i] ?? 0) >= MAX_TRIES);
            if (given.length > 0) {
              await lockConn
                .multi()
                .srem(dueKey, ...given)
                .hdel(triesKey, ...given)
                .exec();
              opts.log.warn(
                { studies: given.length },
                `reconciler change feed: studies that failed ${MAX_TRIES} polls in a row left to the full crawl`,
              );
            }
          }
          opts.log[summary.complete ? 'info' : 'warn'](
            { studies: studies.length, enqueued: summary.enqueued },
            `reconciler (change feed): ${describeSummary(summary)}${summary.complete ? '' : '; the studies not reconciled are asked again next poll'}`,
          );
          opts.onPass?.(summary);
        } finally {
          lock.release();
        }
      } catch (err) {
        if (!abort.signal.aborted && !warned)
          opts.log.warn({ err: (err as Error).message }, 'reconciler change feed unavailable; the full crawl still runs');
        warned = true;
      }
    };
    const scheduleFast = () => {
      fastTimer = setTimeout(() => {
        fastRunning = fast().finally(() => {
          fastRunning = undefined;
          if (!abort.signal.aborted) scheduleFast();
        });
      }, changes.intervalS * 1000);
      fastTimer.unref();
    };
    // Take the cursor now, so that everything stored from here on is seen.
    fastRunning = changes.feed
      .head()
      .then((n) => void (cursor = n))
      .catch(() => undefined)
      .finally(() => {
        fastRunning = undefined;
        if (!abort.signal.aborted) scheduleFast();
      });
  }

  return {
    async stop() {
      abort.abort();
      if (timer) clearTimeout(timer);
      if (fastTimer) clearTimeout(fastTimer);
      await Promise.all([running, fastRunning]);
      await changes?.feed.close();
      lockConn.disconnect();
    },
  };
}
