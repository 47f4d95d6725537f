/**
 * The failed-jobs view behind `cbmir failed`: what could not be indexed, why, and
 * whether retrying can help.
 *
 * The worker (workers/index-worker.ts) fails a job in one of two ways:
 *   - UnrecoverableError naming the step — "decode: CODE: reason", "fetch (WADO-RS): …",
 *     "index write: …" — for what can never succeed (non-image SOP class, corrupt
 *     file, 404 from the PACS, a document the index refuses): *permanent*;
 *   - any other error, retried with backoff until the attempts run out (PACS or index
 *     down for longer than the retry window, ≈ 70 min): *retryable* — once the fault
 *     is fixed, `cbmir failed --retry` puts these back in the queue.
 * A job stamped with another model version that no worker of that version took within
 * 24 h of data.enqueuedAt is failed unrecoverably too, but it is *retryable* (step
 * other-model): once a worker of that version runs, `--retry` re-queues it with a fresh
 * enqueuedAt, which gives it another 24 h.
 */
import type { Job, Queue } from 'bullmq';
import type { IndexJobData } from '../core/jobs.js';

export interface FailedJobView {
  readonly jobId: string;
  readonly studyInstanceUid?: string;
  readonly seriesInstanceUid?: string;
  readonly sopInstanceUid?: string;
  readonly modelVersion?: string;
  readonly source?: string;
  /** Pipeline step that failed: decode | fetch | index-write | other-model | transient. */
  readonly step: 'decode' | 'fetch' | 'index-write' | 'other-model' | 'transient';
  /** Refusal code of the decoder (NOT_AN_IMAGE, CORRUPT, …) when the step is decode. */
  readonly code?: string;
  readonly reason: string;
  readonly attempts: number;
  readonly maxAttempts: number;
  /** ISO 8601 time of the last failure. */
  readonly failedAt?: string;
  readonly retryable: boolean;
}

const PERMANENT: ReadonlyArray<[RegExp, FailedJobView['step']]> = [
  [/^decode: (?:([A-Z][A-Z0-9_]+): )?/, 'decode'],
  [/^fetch \(WADO-RS\): /, 'fetch'],
  [/^index write: /, 'index-write'],
];

// As written by workers/index-worker.ts when a job for another model version got too old.
const OTHER_MODEL = /^model version \S+: no worker of that version took the job\b/;

/** Classify a failure reason as written by the worker. */
export function classifyFailure(failedReason: string): Pick<FailedJobView, 'step' | 'code' | 'reason' | 'retryable'> {
  if (OTHER_MODEL.test(failedReason)) return { step: 'other-model', reason: failedReason, retryable: true };
  for (const [re, step] of PERMANENT) {
    const m = re.exec(failedReason);
    if (m) {
      return {
        step,
        ...(m[1] ? { code: m[1] } : {}),
        reason: failedReason.slice(m[0].length) || failedReason,
        retryable: false,
      };
    }
  }
  return {
    step: 'transient',
    reason: failedReason || '(no reason recorded)',
    retryable: true,
  };
}

export function viewOf(job: Job<IndexJobData>): FailedJobView {
  const d = (job.data ?? {}) as Partial<IndexJobData>;
  const c = classifyFailure(job.failedReason ?? '');
  const out: Record<string, unknown> = {
    jobId: String(job.id),
    studyInstanceUid: d.studyInstanceUid,
    seriesInstanceUid: d.seriesInstanceUid,
    sopInstanceUid: d.sopInstanceUid,
    modelVersion: d.modelVersion,
    source: d.source,
    ...c,
    attempts: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    failedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : undefined,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as unknown as FailedJobView;
}

/** Newest failures first, at most `limit`. */
export async function listFailed(queue: Queue<IndexJobData>, limit: number): Promise<{ total: number; jobs: FailedJobView[] }> {
  const [total, jobs] = await Promise.all([queue.getFailedCount(), queue.getFailed(0, Math.max(0, limit - 1))]);
  const raw = jobs.filter((j): j is Job<IndexJobData> => Boolean(j));
  return { total, jobs: raw.map(viewOf) };
}

/**
 * Every failed job with its view, read in pages (newest first), each job once: pages are
 * positions in a set that changes meanwhile (a job failing now shifts the next page by one).
 * Only an empty page ends the list: BullMQ's getJobs drops a job that vanished between its
 * read of the ids and of the jobs (cleared by the STOW hook, pruned), so a short page can
 * sit in the middle of the list.
 */
export async function listAllFailed(
  queue: Pick<Queue<IndexJobData>, 'getFailed'>,
  pageSize = 1000,
): Promise<{ job: Job<IndexJobData>; view: FailedJobView }[]> {
  const out: { job: Job<IndexJobData>; view: FailedJobView }[] = [];
  const seen = new Set<string>();
  for (let start = 0; ; start += pageSize) {
    const fetched = await queue.getFailed(start, start + pageSize - 1);
    if (fetched.length === 0) return out;
    const page = fetched.filter((j): j is Job<IndexJobData> => Boolean(j));
    for (const job of page) {
      if (seen.has(String(job.id))) continue;
      seen.add(String(job.id));
      out.push({ job, view: viewOf(job) });
    }
  }
}

/** What `--retry` needs of a failed job (a BullMQ Job; a fake in tests). */
export interface RetriableJob {
  readonly id?: string | undefined;
  readonly data: IndexJobData;
  updateData(data: IndexJobData): Promise<void>;
  retry(state: 'failed', opts: { resetAttemptsMade: boolean }): Promise<void>;
}

/**
 * BullMQ's "Missing key for job" (-1) and "not in the failed state" (-3): the job left the
 * failed set after it was listed (pruned, cleared by the gateway's STOW hook, retried by
 * someone else). Nothing to do for it, and no reason to stop the others.
 */
export function isGoneError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === -1 || code === -3) return true;
  const message = err instanceof Error ? err.message : '';
  return /^Missing key for job |^Job \S+ is not in the failed state/.test(message);
}

/** Re-queue one failed job, attempts reset; 'gone' when it is no longer a failed job. */
export async function retryFailedJob(job: RetriableJob, view: Pick<FailedJobView, 'step'>, now = Date.now()): Promise<'retried' | 'gone'> {
  try {
    // The worker measures the 24 h from enqueuedAt: with the old one it would fail the job at once.
    // Before retry, so no worker can take the job with the old value.
    if (view.step === 'other-model') await job.updateData({ ...job.data, enqueuedAt: now });
    await job.retry('failed', { resetAttemptsMade: true });
    return 'retried';
  } catch (err) {
    if (isGoneError(err)) return 'gone';
    throw err;
  }
}

/**
 * `cbmir failed --retry [--all]`: every failed job, not only the ones shown (after a long outage
 * there are tens of thousands), the retryable ones or with `all` every one. All pages are read
 * before any retry moves a job out of the failed set.
 */
export async function retryFailed(
  queue: Pick<Queue<IndexJobData>, 'getFailed'>,
  o: { all?: boolean; pageSize?: number } = {},
): Promise<{ retried: number; gone: number }> {
  let retried = 0;
  let gone = 0;
  for (const { job, view } of await listAllFailed(queue, o.pageSize)) {
    if (!(o.all || view.retryable)) continue;
    if ((await retryFailedJob(job, view)) === 'retried') retried++;
    else gone++;
  }
  return { retried, gone };
}
