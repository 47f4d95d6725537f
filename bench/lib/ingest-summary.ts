/**
 * bench:ingest's figures from the jobs' outcomes. A job the worker refused (failed for
 * good) never made its image searchable: counting it as an image per second, or its
 * failure time as a time to searchable, would credit the pipeline with work it did
 * not do. So only indexed images enter throughput and latency, and refusals are
 * reported, with their first reason, over both phases.
 */
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
