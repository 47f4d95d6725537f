/**
 * Queue and job contracts: the one place where the gateway (which enqueues) and the
 * workers (which consume) agree on queue names, job ids, payloads and results.
 *
 * Two queues, not one queue with priorities: in BullMQ, jobs *without* a priority run
 * before prioritised ones, and priorities cost O(log n) per add; a separate small
 * "embed" queue for interactive /similar requests is simpler and can never be starved
 * by a backfill of a million "index" jobs.
 *
 *   index  — make a stored instance searchable (STOW hook, reconciler, backfill, reindex)
 *   embed  — compute a vector for a query right now (POST /similar upload, or an
 *            instance that is in the PACS but not indexed yet); the gateway waits on it
 *
 * Job ids: `${sopInstanceUid}_${modelVersion}` so a re-sent STOW, or a reconciler pass
 * racing the STOW hook, adds nothing while the first job is still known to Redis.
 * BullMQ refuses custom ids containing ':' (its Redis key separator; only the 3-part
 * legacy repeatable-job form a:b:c slips through, and would be misread as one) and ids
 * that parse as integers; {@link indexJobId} makes any model version safe. Interactive jobs
 * on the embed queue that requests share are named by a digest of all the UIDs they are
 * about ({@link instanceQueryJobId}, {@link heatmapJobId}).
 */
import { createHash } from 'node:crypto';
import type { JobsOptions } from 'bullmq';

/** Queue base names. Queue names may not contain ':' (BullMQ key separator). */
export const QUEUE_NAMES = Object.freeze({ index: 'cbmir-index', embed: 'cbmir-embed' });
export type QueueKind = keyof typeof QUEUE_NAMES;

/**
 * Queue name for a kind, optionally namespaced (tests use a unique namespace per test
 * so parallel runs never share jobs). The namespace is sanitised like a job id.
 */
export function queueName(kind: QueueKind, namespace?: string): string {
  const base = QUEUE_NAMES[kind];
  return namespace ? `${base}-${sanitiseIdPart(namespace)}` : base;
}

/** Where an index job came from: for metrics and for the failed-jobs view. */
export type IndexJobSource = 'stow' | 'reconciler' | 'backfill' | 'reindex' | 'on-demand';

/** Payload of a job on the "index" queue. UIDs only: no pixel data, no PHI. */
export interface IndexJobData {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  /** Model version the vector must be computed with (the index is versioned by it). */
  readonly modelVersion: string;
  readonly source: IndexJobSource;
  /** Epoch ms when the job was created (STOW answered / reconciler found it): for "ms to searchable". */
  readonly enqueuedAt: number;
}

/** Result of an index job. A skip is a success with a reason: nothing to retry. */
export type IndexJobResult =
  | { readonly status: 'indexed'; readonly sopInstanceUid: string; readonly modelVersion: string; readonly frame?: number; readonly indexedAt: string }
  /** Written by workers before 2026-11-29 for another model's job; kept so their records still read. */
  | { readonly status: 'skipped'; readonly sopInstanceUid: string; readonly reason: string };

/** Payload of a job on the "embed" queue: a query vector, computed now. */
export type EmbedJobData =
  | {
      readonly kind: 'instance';
      readonly studyInstanceUid: string;
      readonly seriesInstanceUid: string;
      readonly sopInstanceUid: string;
      readonly modelVersion: string;
      /** Also write the vector to the index (instance in the PACS but not indexed yet). */
      readonly index: boolean;
      readonly enqueuedAt: number;
    }
  | {
      readonly kind: 'upload';
      /** The uploaded Part 10 file, base64 (bounded by MAX_UPLOAD_BYTES). Nothing is stored. */
      readonly dicomBase64: string;
      readonly modelVersion: string;
      readonly enqueuedAt: number;
    };

/** What an embed job returns to the waiting gateway. */
export type EmbedJobResult =
  | {
      readonly status: 'embedded';
      readonly vector: number[];
      readonly modelVersion: string;
      readonly frame?: number;
      /** Present for uploads, so excludeSameStudy/Patient work for unseen images too. */
      readonly studyInstanceUid?: string;
      readonly seriesInstanceUid?: string;
      readonly sopInstanceUid?: string;
      readonly modality?: string;
      readonly bodyPartExamined?: string;
      /** Salted hash of PatientID (see core/index/patient-key.ts), never the ID itself. */
      readonly patientKey?: string;
    }
  | { readonly status: 'refused'; readonly reason: string };

/**
 * A similarity heatmap for a query/result pair (GET/POST /similar/heatmap, docs/heatmaps.md),
 * also on the "embed" queue: interactive, waited for like an embedding. Kept out of
 * EmbedJobData so the vector-only producers stay exhaustive; the embed queue carries
 * {@link EmbedQueueJobData}.
 */
export type HeatmapSide =
  | { readonly studyInstanceUid: string; readonly seriesInstanceUid: string; readonly sopInstanceUid: string }
  | { readonly dicomBase64: string };

export interface HeatmapJobData {
  readonly kind: 'heatmap';
  /** An archived instance (the worker fetches it with the service's credentials after the gateway checked the caller's) or the uploaded query. */
  readonly query: HeatmapSide;
  readonly result: HeatmapSide;
  readonly modelVersion: string;
  readonly enqueuedAt: number;
}

/** Per-location contributions (row-major height × width) of each image to s = e_q · e_r. */
export type HeatmapJobResult =
  | {
      readonly status: 'heatmap';
      readonly modelVersion: string;
      readonly similarity: number;
      readonly height: number;
      readonly width: number;
      readonly query: number[];
      readonly result: number[];
    }
  | { readonly status: 'refused'; readonly reason: string };

/** Everything the "embed" queue carries. */
/**
 * `deferrals`: times a worker of another model version put the job back (a rolling upgrade),
 * counted by the workers themselves, whose clocks need not agree with the gateway's.
 */
export type EmbedQueueJobData = (EmbedJobData | HeatmapJobData) & { readonly deferrals?: number };
export type EmbedQueueJobResult = EmbedJobResult | HeatmapJobResult;

/** Upper bound for an upload carried inside a job (Redis holds it while the job lives). */
export const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;

const ID_UNSAFE = /[^A-Za-z0-9._-]/g;

function sanitiseIdPart(s: string): string {
  return s.replace(ID_UNSAFE, '-');
}

/**
 * Job id for an index job: `${sopInstanceUid}_${modelVersion}` with every character
 * outside [A-Za-z0-9._-] replaced by '-' (so ':' and '/' in a version string are safe).
 * Never an integer (the '_' sees to that), which BullMQ would also refuse.
 */
export function indexJobId(sopInstanceUid: string, modelVersion: string): string {
  if (!sopInstanceUid) throw new Error('indexJobId: sopInstanceUid is empty');
  if (!modelVersion) throw new Error('indexJobId: modelVersion is empty');
  return `${sanitiseIdPart(sopInstanceUid)}_${sanitiseIdPart(modelVersion)}`;
}

/**
 * 32 hex digits (128 bits) of SHA-256 over the UIDs, in order: a job id part of fixed length
 * for several UIDs of up to 64 characters each. A collision is not relied on never to happen:
 * whoever joins a job under such an id checks its data first (core/queue/job-requester.ts addShared).
 */
function uidsDigest(uids: readonly string[]): string {
  return createHash('sha256').update(uids.join('\n')).digest('hex').slice(0, 32);
}

type InstanceUidTriple = Pick<IndexJobData, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>;

/** The same archived instance: study, series and SOP Instance UID alike (see instanceQueryJobId for why all three). */
export function sameInstanceUids(a: InstanceUidTriple, b: InstanceUidTriple): boolean {
  return a.studyInstanceUid === b.studyInstanceUid && a.seriesInstanceUid === b.seriesInstanceUid && a.sopInstanceUid === b.sopInstanceUid;
}

/**
 * Job id of an on-demand embedding of an archived instance (a /similar query for an instance
 * not indexed yet): `q_${digest of its study, series and SOP Instance UIDs}_${modelVersion}`, so
 * that identical requests made together share one job. All three UIDs: a SOP Instance UID is
 * not unique across archives in practice (copied studies, UIDs made by hand), and a job for
 * (study B, series B, sop X) must not answer a request for (study A, series A, sop X).
 */
export function instanceQueryJobId(d: Pick<IndexJobData, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid' | 'modelVersion'>): string {
  if (!d.modelVersion) throw new Error('instanceQueryJobId: modelVersion is empty');
  return `q_${uidsDigest([d.studyInstanceUid, d.seriesInstanceUid, d.sopInstanceUid])}_${sanitiseIdPart(d.modelVersion)}`;
}

/**
 * Job id of a heatmap of two archived instances: `h_${digest of both UID triples, query first}_${modelVersion}`,
 * so that identical requests made together share one job. None for a heatmap of an uploaded
 * query: nobody else asks for it, and its job is removed once answered.
 */
export function heatmapJobId(d: HeatmapJobData): string | undefined {
  const q = d.query;
  const r = d.result;
  if ('dicomBase64' in q || 'dicomBase64' in r) return undefined;
  if (!d.modelVersion) throw new Error('heatmapJobId: modelVersion is empty');
  const uids = [q.studyInstanceUid, q.seriesInstanceUid, q.sopInstanceUid, r.studyInstanceUid, r.seriesInstanceUid, r.sopInstanceUid];
  return `h_${uidsDigest(uids)}_${sanitiseIdPart(d.modelVersion)}`;
}

/**
 * Default options for index jobs. Transient faults (PACS or index down) are retried
 * with exponential backoff: 2 s, 4 s, … ≈ 70 min over 12 attempts, long enough to ride
 * out a restart of Elasticsearch. Completed jobs are dropped after an hour so the
 * reconciler can re-enqueue an instance whose document was later deleted; failed jobs
 * are kept a week for the failed-jobs view.
 */
export const INDEX_JOB_OPTIONS: Readonly<JobsOptions> = Object.freeze({
  attempts: 12,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: { age: 3_600, count: 50_000 },
  removeOnFail: { age: 7 * 24 * 3_600 },
});

/**
 * Default options for embed jobs: the gateway waits for them with a timeout, so there is
 * no point retrying for long, and an uploaded image must not linger in Redis. Credentials
 * never travel in a job: the gateway checks the caller's access before enqueuing and the
 * worker fetches with the service's own PACS credentials.
 */
export const EMBED_JOB_OPTIONS: Readonly<JobsOptions> = Object.freeze({
  attempts: 2,
  backoff: { type: 'fixed', delay: 200 },
  removeOnComplete: { age: 60 },
  removeOnFail: { age: 600 },
});

/**
 * Options for a job that carries an uploaded file (PHI): removed as soon as it fails. The
 * gateway hears the failure through the queue's events all the same, and a failed job kept for
 * 600 s would keep the file when the worker could not blank it (one killed mid-job, whose job
 * BullMQ then fails as stalled).
 */
export const UPLOAD_JOB_OPTIONS: Readonly<JobsOptions> = Object.freeze({ ...EMBED_JOB_OPTIONS, removeOnFail: true });
