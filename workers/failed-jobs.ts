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
  /** Pipeline step that failed: decode | fetch | index-write | transient. */
  readonly step: 'decode' | 'fetch' | 'index-write' | 'transient';
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

/** Classify a failure reason as written by the worker. */
export function classifyFailure(failedReason: string): Pick<FailedJobView, 'step' | 'code' | 'reason' | 'retryable'> {
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

/** Every failed job with its view, read in pages (newest first). */
export async function listAllFailed(
  queue: Queue<IndexJobData>,
  pageSize = 1000,
): Promise<{ job: Job<IndexJobData>; view: FailedJobView }[]> {
  const out: { job: Job<IndexJobData>; view: FailedJobView }[] = [];
  for (let start = 0; ; start += pageSize) {
    const page = (await queue.getFailed(start, start + pageSize - 1)).filter((j): j is Job<IndexJobData> => Boolean(j));
    for (const job of page) out.push({ job, view: viewOf(job) });
    if (page.length < pageSize) return out;
  }
}
