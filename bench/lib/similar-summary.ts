/**
 * bench:similar's summaries that its JSON and prose rest on, kept apart from the run so
 * that a failed request can never drop out of a figure unnoticed: a p50 over the
 * successful uploads alone looks like a clean run while some answered 503.
 */
import { verdictCell, type Verdict } from './proxy-targets.js';
import { percentile } from './stats.js';

export interface UploadAnswer {
  readonly ms: number;
  /** HTTP status; 0: no answer (connection refused, timed out). */
  readonly status: number;
  /** Why there was no answer. */
  readonly error?: string;
}

/**
 * One upload, timed: a request that gets no answer is a failed upload (status 0), not
 * an exception that ends the run with the levels not measured.
 */
export async function timedUpload(send: () => Promise<number>, now: () => number = () => performance.now()): Promise<UploadAnswer> {
  const t0 = now();
  try {
    const status = await send();
    return { ms: now() - t0, status };
  } catch (err) {
    return { ms: now() - t0, status: 0, error: (err as Error).message };
  }
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
  /** Status of the first non-200 answer (0: no answer). */
  readonly firstErrorStatus?: number;
  /** The first failure in words: "HTTP 503", or "no answer: <why>". */
  readonly firstError?: string;
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
    ...(failed[0]
      ? {
          firstErrorStatus: failed[0].status,
          firstError: failed[0].status === 0 ? `no answer: ${failed[0].error ?? 'unknown error'}` : `HTTP ${failed[0].status}`,
        }
      : {}),
  };
}

export interface LevelFigures {
  readonly errors: number;
  readonly requests: number;
  readonly rps: number;
  readonly first_error?: string;
}

/** A level's latency figures (ms): over every request started in the window, and over the 200 answers alone (ok_*). */
export interface LevelLatency {
  readonly avg_ms: number;
  readonly p90_ms: number;
  readonly max_ms: number;
  readonly ok_avg_ms: number;
  readonly ok_p90_ms: number;
  readonly ok_max_ms: number;
  /** Of the errors, requests without an answer within the timeout. */
  readonly timeouts: number;
}

export interface SimilarResult {
  /** avg/p90/max_ms: every request started in the level's window, failed ones at their elapsed time; ok_*: the 200 answers alone. */
  levels: Record<string, LevelLatency & { errors: number }>;
  upload_p50_ms: number | null;
  /** null: no upload was run (--upload-requests 0). */
  upload_errors: number | null;
  /** The headline claim: ≥ 10× better than the published system on each of its figures. */
  tenfold: TenfoldVerdicts['json'];
  backend: 'elasticsearch';
}

/** The JSON line: the upload's p50 never without the count of uploads that failed. */
export function similarResultJson(
  levels: Readonly<Record<string, LevelFigures & LevelLatency>>,
  upload: UploadSummary | undefined,
): SimilarResult {
  return {
    levels: Object.fromEntries(
      Object.entries(levels).map(([k, v]) => [
        k,
        {
          avg_ms: v.avg_ms,
          p90_ms: v.p90_ms,
          max_ms: v.max_ms,
          errors: v.errors,
          timeouts: v.timeouts,
          ok_avg_ms: v.ok_avg_ms,
          ok_p90_ms: v.ok_p90_ms,
          ok_max_ms: v.ok_max_ms,
        },
      ]),
    ),
    upload_p50_ms: upload ? upload.p50 : null,
    upload_errors: upload ? upload.errors : null,
    tenfold: tenfoldVerdicts(levels).json,
    backend: 'elasticsearch',
  };
}

/**
 * The published system's headline figures (its Table 6): mean latency 274 ms for 1 user,
 * 25.7 s for 128 users, every request timed out at 256. Ours must be ≥ 10× better on each.
 */
export const PUBLISHED_HEADLINE = { oneUserAvgMs: 274, users128AvgMs: 25_700 } as const;
export const TENFOLD_LIMITS = {
  oneUserAvgMs: PUBLISHED_HEADLINE.oneUserAvgMs / 10,
  users128AvgMs: PUBLISHED_HEADLINE.users128AvgMs / 10,
} as const;

export interface TenfoldVerdicts {
  readonly json: { one_user_avg: Verdict; users_128_avg: Verdict; users_256_no_errors: Verdict; met: boolean };
  /** [target, result] rows for the report. */
  readonly rows: [string, string][];
}

type TenfoldLevel = { readonly avg_ms: number; readonly errors: number; readonly timeouts?: number };

const errorsText = (l: TenfoldLevel): string =>
  `${l.errors} error${l.errors === 1 ? '' : 's'}${l.timeouts ? `, ${l.timeouts} timed out` : ''}`;
const ms = (x: number): string => (Number.isFinite(x) ? `${x.toLocaleString('en-US', { maximumFractionDigits: 1 })} ms` : '–');

/**
 * A mean is judged only where no request failed: a level with errors has no speed-up to
 * claim (failures that come back fast would even lower its mean). A level that was not
 * run is "not run", never met.
 */
export function tenfoldVerdicts(levels: Readonly<Record<string, TenfoldLevel>>): TenfoldVerdicts {
  const meanVerdict = (l: TenfoldLevel | undefined, limit: number): Verdict =>
    !l ? 'not run' : l.errors === 0 && l.avg_ms <= limit ? 'met' : 'missed';
  const l1 = levels['1'];
  const l128 = levels['128'];
  const l256 = levels['256'];
  const one = meanVerdict(l1, TENFOLD_LIMITS.oneUserAvgMs);
  const many = meanVerdict(l128, TENFOLD_LIMITS.users128AvgMs);
  const none: Verdict = !l256 ? 'not run' : l256.errors === 0 ? 'met' : 'missed';
  const result = (v: Verdict, l: TenfoldLevel | undefined, mean: boolean): string =>
    v === 'not run' || !l ? 'not run' : `${verdictCell(v)} (${mean ? `${ms(l.avg_ms)}, ` : ''}${errorsText(l)})`;
  return {
    json: { one_user_avg: one, users_128_avg: many, users_256_no_errors: none, met: [one, many, none].every((v) => v === 'met') },
    rows: [
      [
        `1 user: mean ≤ ${TENFOLD_LIMITS.oneUserAvgMs} ms (published ${PUBLISHED_HEADLINE.oneUserAvgMs} ms ÷ 10), no errors`,
        result(one, l1, true),
      ],
      [
        `128 users: mean ≤ ${TENFOLD_LIMITS.users128AvgMs.toLocaleString('en-US')} ms (published ${PUBLISHED_HEADLINE.users128AvgMs / 1000} s ÷ 10), no errors`,
        result(many, l128, true),
      ],
      ['256 users: no errors or timeouts (published: every request timed out)', result(none, l256, false)],
    ],
  };
}

/** The table's speed-up cell: published mean ÷ ours, one decimal; none where we had errors or no figure. */
export function speedUpCell(publishedAvgMs: number | undefined, level: { readonly avg_ms: number; readonly errors: number }): string {
  if (publishedAvgMs === undefined || !Number.isFinite(publishedAvgMs) || level.errors > 0) return '–';
  if (!(level.avg_ms > 0) || !Number.isFinite(level.avg_ms)) return '–';
  return `${(publishedAvgMs / level.avg_ms).toFixed(1)}×`;
}

/** Orthanc's CPU per request (the access checks' QIDOs) at the lowest and highest level measured, for the report's prose. */
export function orthancCpuSentence(levels: Readonly<Record<string, { readonly cpu?: { readonly orthanc: number } }>>): string {
  const measured = Object.entries(levels)
    .filter(([, l]) => l.cpu && Number.isFinite(l.cpu.orthanc))
    .map(([u, l]) => ({ users: Number(u), ms: l.cpu!.orthanc }))
    .sort((x, y) => x.users - y.users);
  const lo = measured[0];
  const hi = measured[measured.length - 1];
  if (!lo || !hi) return "Orthanc's CPU was not measured in this run (given by URL).";
  const at = (m: { users: number; ms: number }): string => `${m.ms.toFixed(1)} ms at ${m.users} user${m.users === 1 ? '' : 's'}`;
  return lo === hi
    ? `In this run Orthanc's CPU per request was ${at(lo)}.`
    : `In this run Orthanc's CPU per request was ${at(lo)} and ${at(hi)}.`;
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
