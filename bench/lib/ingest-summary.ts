/**
 * bench:ingest's figures from the jobs' outcomes. A job the worker refused (failed for
 * good) never made its image searchable: counting it as an image per second, or its
 * failure time as a time to searchable, would credit the pipeline with work it did
 * not do. So only indexed images enter throughput and latency, and refusals are
 * reported, with their first reason, over both phases.
 */
import { verdictCell, type Verdict } from './proxy-targets.js';
import { percentile } from './stats.js';

/** How an image's index job ended (epoch ms of finishedOn). */
export interface JobEnd {
  readonly at: number;
  readonly ok: boolean;
  readonly reason?: string;
}

/** One image of a STOW request (epoch ms). */
export interface SentImage {
  readonly sop: string;
  readonly sentAt: number;
  readonly answeredAt: number;
}

export interface ThroughputSummary {
  readonly images: number;
  readonly indexed: number;
  readonly refused: number;
  /** First STOW sent → last indexed image searchable. */
  readonly seconds: number;
  /** Indexed images per second over `seconds`; 0 when nothing was indexed. */
  readonly imagesPerS: number;
}

/** `t0`: epoch ms the first STOW of the phase was sent. */
export function summariseThroughput(t0: number, done: ReadonlyMap<string, JobEnd>): ThroughputSummary {
  const ends = [...done.values()];
  const ok = ends.filter((d) => d.ok);
  const lastAt = ok.reduce((m, d) => Math.max(m, d.at), t0);
  const seconds = (lastAt - t0) / 1000;
  return {
    images: ends.length,
    indexed: ok.length,
    refused: ends.length - ok.length,
    seconds,
    imagesPerS: ok.length && seconds > 0 ? ok.length / seconds : 0,
  };
}

export interface IngestLatency {
  readonly images: number;
  readonly indexed: number;
  readonly refused: number;
  /** STOW answered → searchable (ms) of the indexed images, ascending. */
  readonly msToSearchable: number[];
  readonly p50: number | null;
  readonly p95: number | null;
}

export function summariseLatency(sent: readonly SentImage[], done: ReadonlyMap<string, JobEnd>): IngestLatency {
  const ms: number[] = [];
  let refused = 0;
  for (const s of sent) {
    const d = done.get(s.sop);
    if (!d) throw new Error(`no job outcome for ${s.sop}`);
    if (d.ok) ms.push(d.at - s.answeredAt);
    else refused++;
  }
  ms.sort((x, y) => x - y);
  return {
    images: sent.length,
    indexed: ms.length,
    refused,
    msToSearchable: ms,
    p50: ms.length ? Math.round(percentile(ms, 50)) : null,
    p95: ms.length ? Math.round(percentile(ms, 95)) : null,
  };
}

/** Refusals of every phase: how many, per phase, and the first reason (for the log and the report). */
export function summariseRefusals(phases: Readonly<Record<string, ReadonlyMap<string, JobEnd>>>): {
  total: number;
  byPhase: Record<string, number>;
  firstReason?: string;
} {
  const byPhase: Record<string, number> = {};
  let firstReason: string | undefined;
  for (const [phase, done] of Object.entries(phases)) {
    let n = 0;
    for (const d of done.values()) {
      if (d.ok) continue;
      n++;
      firstReason ??= d.reason ?? 'no reason recorded';
    }
    byPhase[phase] = n;
  }
  const total = Object.values(byPhase).reduce((s, n) => s + n, 0);
  return { total, byPhase, ...(firstReason !== undefined ? { firstReason } : {}) };
}

/**
 * The rate the workers could reach if they had every CPU of the machine to themselves,
 * from their CPU time per image in this run: a ceiling measured on the machine the run
 * is on, not a figure carried over from another CPU. null when nothing was measured.
 */
export function workerCpuCeiling(cpus: number, workerCpuMsPerImage: number): number | null {
  return cpus > 0 && Number.isFinite(workerCpuMsPerImage) && workerCpuMsPerImage > 0 ? (cpus * 1000) / workerCpuMsPerImage : null;
}

/** Issue #4's targets: every image indexed, ≥ 30 images/s end to end, p95 STOW answered → searchable ≤ 5 s. */
export const INGEST_TARGETS = { minImagesPerS: 30, maxP95Ms: 5_000 } as const;

export interface IngestVerdicts {
  readonly byTarget: { indexed_all: Verdict; images_per_s: Verdict; p95_ms_to_searchable: Verdict };
  readonly met: boolean;
  /** [target, result] rows for the report. */
  readonly rows: [string, string][];
}

export function ingestVerdicts(r: {
  readonly images: number;
  readonly indexed: number;
  readonly images_per_s: number;
  readonly p95_ms_to_searchable: number | null;
}): IngestVerdicts {
  const cell = (v: Verdict, what: string): string => (v === 'not run' ? v : `${verdictCell(v)} (${what})`);
  const indexed: Verdict = r.images > 0 && r.indexed === r.images ? 'met' : 'missed';
  const rate: Verdict = r.images_per_s >= INGEST_TARGETS.minImagesPerS ? 'met' : 'missed';
  // No latency phase (--latency-images 0): no evidence either way.
  const p95: Verdict = r.p95_ms_to_searchable === null ? 'not run' : r.p95_ms_to_searchable <= INGEST_TARGETS.maxP95Ms ? 'met' : 'missed';
  return {
    byTarget: { indexed_all: indexed, images_per_s: rate, p95_ms_to_searchable: p95 },
    met: [indexed, rate, p95].every((v) => v === 'met'),
    rows: [
      ['every image indexed', cell(indexed, `${r.indexed} of ${r.images}`)],
      [`≥ ${INGEST_TARGETS.minImagesPerS} images/s end to end`, cell(rate, `${r.images_per_s} images/s`)],
      [`p95 STOW answered → searchable ≤ ${INGEST_TARGETS.maxP95Ms / 1000} s`, cell(p95, `${r.p95_ms_to_searchable} ms`)],
    ],
  };
}
