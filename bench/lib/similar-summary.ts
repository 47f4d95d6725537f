/**
 * bench:similar's summaries that its JSON and prose rest on, kept apart from the run so
 * that a failed request can never drop out of a figure unnoticed: a p50 over the
 * successful uploads alone looks like a clean run while some answered 503.
 */
import { percentile } from './stats.js';

export interface UploadAnswer {
  readonly ms: number;
  readonly status: number;
}

export interface UploadSummary {
  /** Measured requests (warm-ups excluded). */
  readonly requests: number;
  readonly warmups: number;
  /** Non-200 answers, warm-ups included: a warm-up that fails is a failure of the system, not of the measurement. */
  readonly errors: number;
  /** Latencies (ms) of the measured 200 answers, ascending. */
  readonly samples: number[];
  readonly p50: number | null;
  readonly p90: number | null;
  /** Status of the first non-200 answer. */
  readonly firstErrorStatus?: number;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export function summariseUploads(warmups: readonly UploadAnswer[], measured: readonly UploadAnswer[]): UploadSummary {
  const failed = [...warmups, ...measured].filter((r) => r.status !== 200);
  const samples = measured
    .filter((r) => r.status === 200)
    .map((r) => r.ms)
    .sort((x, y) => x - y);
  return {
    requests: measured.length,
    warmups: warmups.length,
    errors: failed.length,
    samples,
    p50: samples.length ? round2(percentile(samples, 50)) : null,
    p90: samples.length ? round2(percentile(samples, 90)) : null,
    ...(failed[0] ? { firstErrorStatus: failed[0].status } : {}),
  };
}

export interface LevelFigures {
  readonly errors: number;
  readonly requests: number;
  readonly rps: number;
  readonly first_error?: string;
}

export interface SimilarResult {
  levels: Record<string, { avg_ms: number; p90_ms: number; max_ms: number; errors: number }>;
  upload_p50_ms: number | null;
  /** null: no upload was run (--upload-requests 0). */
  upload_errors: number | null;
  backend: 'elasticsearch';
}

/** The JSON line: the upload's p50 never without the count of uploads that failed. */
export function similarResultJson(
  levels: Readonly<Record<string, LevelFigures & { avg_ms: number; p90_ms: number; max_ms: number }>>,
  upload: UploadSummary | undefined,
): SimilarResult {
  return {
    levels: Object.fromEntries(
      Object.entries(levels).map(([k, v]) => [k, { avg_ms: v.avg_ms, p90_ms: v.p90_ms, max_ms: v.max_ms, errors: v.errors }]),
    ),
    upload_p50_ms: upload ? upload.p50 : null,
    upload_errors: upload ? upload.errors : null,
    backend: 'elasticsearch',
  };
}

/** The level with the highest throughput (the first of equals), or undefined when none ran. */
export function peakLevel(levels: Readonly<Record<string, LevelFigures>>): { users: number; rps: number } | undefined {
  let best: { users: number; rps: number } | undefined;
  for (const [users, l] of Object.entries(levels)) if (!best || l.rps > best.rps) best = { users: Number(users), rps: l.rps };
  return best;
}

/** The report's sentence on failed requests, from the levels' counts. */
export function levelErrorsSentence(levels: Readonly<Record<string, LevelFigures>>): string {
  const failing = Object.entries(levels).filter(([, l]) => l.errors > 0);
  if (failing.length === 0) return 'no request failed or timed out at any level.';
  const total = failing.reduce((s, [, l]) => s + l.errors, 0);
  const where = failing.map(([u, l]) => `${l.errors} at ${u} users${l.first_error ? ` (first: ${l.first_error})` : ''}`).join(', ');
  return `${total} request${total === 1 ? '' : 's'} failed or timed out: ${where}.`;
}
