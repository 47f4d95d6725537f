/**
 * The index and embed queue consumers (ARCHITECTURE.md flow 4).
 *
 *   index job: WADO-RS fetch (as stored) → decode → preprocess → micro-batched
 *              embedding → bulk upsert into the vector index. A multi-frame instance
 *              over CBMIR_WORKER_MAX_INSTANCE_BYTES is fetched as its metadata and
 *              middle frame alone (fetchForEmbedding, core/dicom/single-frame.ts).
 *   embed job: the same for one query image (an instance not yet indexed, or an
 *              upload that is never stored); the gateway waits for the result.
 *   heatmap job: both images of a /similar/heatmap pair → feature maps → the
 *              heatmap graph (workers/heatmap.ts, docs/heatmaps.md).
 *
 * Failure policy (BullMQ): transient faults (PACS or index unreachable, 5xx,
 * memory exhausted while decoding: core/dicom/resources.ts) throw and are retried
 * with exponential backoff (core/jobs.ts); objects that can never be embedded (SR,
 * presentation states, corrupt files) fail with UnrecoverableError naming the step
 * and the reason, and stay in the failed set for `cbmir failed`. A worker killed
 * mid-batch leaves its jobs "active"; BullMQ's stalled-job check hands them to the
 * next worker, so nothing is lost.
 */
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import pLimit from 'p-limit';
import type { Redis } from 'ioredis';
import type { Logger } from '../core/log.js';
import {
  queueName,
  type EmbedQueueJobData,
  type EmbedQueueJobResult,
  type HeatmapJobData,
  type HeatmapJobResult,
  type HeatmapSide,
  type IndexJobData,
  type IndexJobResult,
} from '../core/jobs.js';
import { isTransientPacsError, PacsHttpError, PacsTooLargeError, type PacsClient } from '../core/pacs/client.js';
import { patientKey } from '../core/index/patient-key.js';
import { classifyIndexError } from '../core/index/errors.js';
import type { VectorDoc, VectorIndex } from '../core/index/types.js';
import { MicroBatcher } from '../models/runtime/micro-batcher.js';
import { isRedisConnectionError, workerConnection } from '../core/queue/redis.js';
import type { EmbeddingPipeline, EmbedResult } from './embedding-pipeline.js';
import { HeatmapJobs } from './heatmap.js';
import type { InstanceMeta } from '../core/dicom/decode.js';
import { checkPixelsSupported, frameCount, SingleFrameError, singleFrameInstance, wordAlignedFrame } from '../core/dicom/single-frame.js';
import { MAX_TEXT_FIELD } from '../core/index/validate.js';
import { DEFAULT_MAX_INSTANCE_BYTES, withoutCredentials } from '../core/config.js';

export interface WorkerDeps {
  readonly redisUrl: string;
  readonly pipeline: EmbeddingPipeline;
  readonly index: VectorIndex;
  readonly pacs: PacsClient;
  readonly patientKeySecret: string;
  readonly log: Logger;
  /** Index jobs in flight (most wait for the index refresh that makes them searchable). */
  readonly concurrency: number;
  /** Index jobs holding an instance (fetch → decode → embed) at once; default 32. Bounds memory. */
  readonly decodeConcurrency?: number;
  /** Largest WADO-RS answer a job fetches (CBMIR_WORKER_MAX_INSTANCE_BYTES); default 512 MiB. */
  readonly maxInstanceBytes?: number;
  /** How long the gateway waits for an embed or heatmap job (CBMIR_EMBED_TIMEOUT_MS); default 10 s. */
  readonly embedTimeoutMs?: number;
  /** Queue namespace (tests); default none. */
  readonly namespace?: string;
  /** How often to look for jobs of dead workers (ms); BullMQ default 30 s. */
  readonly stalledIntervalMs?: number;
  /** Upserts gathered into one bulk write. */
  readonly writeBatch?: number;
  readonly writeWaitMs?: number;
  readonly onIndexed?: (job: IndexJobData, msToSearchable: number) => void;
  /** How long index jobs wait while the index does not answer, before one looks again (ms); default 5 s. */
  readonly indexDownPauseMs?: number;
  readonly onFailed?: (queue: 'index' | 'embed', reason: string) => void;
}

export interface RunningWorkers {
  readonly index: Worker<IndexJobData, IndexJobResult>;
  readonly embed: Worker<EmbedQueueJobData, EmbedQueueJobResult>;
  /** Jobs being processed in this process now (both queues). */
  activeJobs(): number;
  /** Whether every Redis connection of the workers is up. */
  redisConnected(): boolean;
  /** Resolves once both workers' main Redis connections are up (BullMQ's waitUntilReady). */
  ready(): Promise<void>;
  /**
   * Stop taking jobs, let the active ones finish, flush pending index writes. With Redis not
   * connected it waits for nothing: a graceful close would wait for Redis to come back, and an
   * active job could not report its result anyway (another worker's stalled check takes it).
   */
  close(): Promise<void>;
}

/** How often a repeated worker 'error' is logged at most (a Redis that is down emits one per reconnect attempt). */
export const WORKER_ERROR_LOG_EVERY_MS = 60_000;

/**
 * The logger of the workers' 'error' events: the first of a kind (Redis connection, other)
 * at once, then at most one every `everyMs`, with how many were left out since. A connection
 * error names Redis and CBMIR_REDIS_URL (without credentials): ECONNREFUSED alone says neither.
 */
export function workerErrorLogger(
  log: Pick<Logger, 'warn'>,
  redisUrl: string,
  everyMs = WORKER_ERROR_LOG_EVERY_MS,
  now: () => number = Date.now,
): (queue: string, err: Error) => void {
  const kinds = { redis: { at: -Infinity, left: 0 }, other: { at: -Infinity, left: 0 } };
  return (queue, err) => {
    const redis = isRedisConnectionError(err);
    const k = kinds[redis ? 'redis' : 'other'];
    const t = now();
    if (t - k.at < everyMs) {
      k.left++;
      return;
    }
    const left = k.left;
    k.at = t;
    k.left = 0;
    const more = left > 0 ? ` (${left} more since the last one)` : '';
    if (redis)
      log.warn(
        { queue, err: err.message, redis: withoutCredentials(redisUrl), ...(left > 0 ? { left } : {}) },
        `worker error: Redis at ${withoutCredentials(redisUrl)} (CBMIR_REDIS_URL) does not answer; reconnecting, logged once a minute${more}`,
      );
    else log.warn({ queue, err: err.message, ...(left > 0 ? { left } : {}) }, `worker error${more}`);
  };
}

/** Embed/heatmap jobs in flight per worker: at least 2, at most the decode bound (memory: one instance each). */
export function embedConcurrency(concurrency: number, decodeConcurrency = 32): number {
  return Math.max(2, Math.min(concurrency, decodeConcurrency));
}

/** How long a job for another model version waits before a worker looks at it again. */
const OTHER_MODEL_DELAY_MS = 30_000;
/**
 * How long a job for another model version may keep being put back. Past this no worker of its
 * version has come (an upgrade left a backlog stamped with the old model): it fails, naming the
 * version, instead of being taken every 30 s for ever; the reconciler queues the instance again
 * for the live version, and `cbmir failed --retry` brings it back once such a worker runs.
 */
export const OTHER_MODEL_MAX_AGE_MS = 24 * 3_600_000;
/** The same for a /similar query, which a user is waiting for (CBMIR_EMBED_TIMEOUT_MS, 10 s). */
const OTHER_MODEL_EMBED_DELAY_MS = 1_000;

/** The job's data without the uploaded files it carries (undefined: it carries none). */
export function withoutUploads(d: EmbedQueueJobData): EmbedQueueJobData | undefined {
  if (d.kind === 'upload') return d.dicomBase64 ? { ...d, dicomBase64: '' } : undefined;
  if (d.kind !== 'heatmap') return undefined;
  const blank = (side: HeatmapSide): HeatmapSide => ('dicomBase64' in side && side.dicomBase64 ? { dicomBase64: '' } : side);
  const out = { ...d, query: blank(d.query), result: blank(d.result) };
  return out.query === d.query && out.result === d.result ? undefined : out;
}

/**
 * A /similar embed or heatmap job for another model version (a rolling upgrade): put back for
 * a worker of that version while the gateway may still be waiting for it. Past `maxAgeMs` nobody
 * is: it fails, its uploaded files dropped first, instead of being put back every second for
 * ever (the gateway cannot remove a job a worker holds at that moment). Its age is the workers'
 * count of put-backs, each at least OTHER_MODEL_EMBED_DELAY_MS: the gateway's clock, which
 * stamped `enqueuedAt`, may be off from theirs by more than the whole wait.
 */
export async function deferOtherModelEmbed(
  job: Pick<Job<EmbedQueueJobData, EmbedQueueJobResult>, 'data' | 'updateData' | 'moveToDelayed'>,
  token: string | undefined,
  workerVersion: string,
  maxAgeMs: number,
  now = Date.now(),
): Promise<never> {
  const d = job.data;
  const deferrals = d.deferrals ?? 0;
  if ((deferrals + 1) * OTHER_MODEL_EMBED_DELAY_MS > maxAgeMs) {
    const bare = withoutUploads(d);
    if (bare) await job.updateData(bare).catch(() => undefined);
    throw new UnrecoverableError(
      `model version ${d.modelVersion}: no worker of that version took the job within ${maxAgeMs} ms, and nobody waits for it any more (this worker runs ${workerVersion})`,
    );
  }
  await job.updateData({ ...d, deferrals: deferrals + 1 });
  await job.moveToDelayed(now + OTHER_MODEL_EMBED_DELAY_MS, token);
  throw new DelayedError();
}

/**
 * "WADO-RS answer of N bytes for frame 48 exceeds …": an answer counts its multipart envelope too,
 * so the reason names the answer, not the size of what it carries.
 */
function tooLarge(err: PacsTooLargeError): string {
  const frame = /\/frames\/(\d+)$/.exec(err.path)?.[1];
  const what = err.path.endsWith('/metadata') ? 'the metadata' : frame ? `frame ${frame}` : /\/instances\/[^/]+$/.test(err.path) ? 'the instance' : 'bulk data';
  return `WADO-RS answer of ${err.declaredBytes ?? `more than ${err.limit}`} bytes for ${what} exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES (${err.limit})`;
}

/** Turn a fetch error into retry (throw as is) or give-up (UnrecoverableError). */
export function fetchFailure(step: string, err: unknown): Error {
  // Deterministic for this instance: refused like a frame too large to decode.
  if (err instanceof PacsTooLargeError) return new UnrecoverableError(`decode: TOO_LARGE: ${tooLarge(err)}`);
  // The worker fetches with the service's own login: 401/403 is a configuration fault (a
  // rotated password), not a property of the image, so the job retries and `cbmir failed
  // --retry` can put it back once the setting is fixed.
  if (err instanceof PacsHttpError && (err.status === 401 || err.status === 403)) {
    return new Error(`${err.message}: the PACS refused the service login (CBMIR_PACS_USER / CBMIR_PACS_PASSWORD)`);
  }
  if (err instanceof PacsHttpError && !err.transient) return new UnrecoverableError(`${step}: ${err.message}`);
  if (isTransientPacsError(err)) return err as Error;
  return new UnrecoverableError(`${step}: ${(err as Error).message}`);
}

type InstanceIds = Pick<IndexJobData, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>;

/** What a job embeds: Part-10 bytes, and when they hold one frame of the stored instance alone, which. */
export interface FetchedInstance {
  readonly bytes: Uint8Array;
  readonly frame?: { readonly number: number; readonly of: number };
}

/** The PACS calls fetchForEmbedding makes. */
export type EmbeddingPacs = Pick<PacsClient, 'retrieveInstance' | 'retrieveMetadata' | 'retrieveFrame' | 'retrieveBulkData'>;

/**
 * The instance a job embeds, each WADO-RS answer within `maxBytes` (held whole while it decodes).
 * A multi-frame instance over the limit (a tomosynthesis or Enhanced CT object of 600 MB) is
 * fetched as its metadata and the one frame indexing embeds (`frameToEmbed`), a few MB; a
 * single-frame one stays refused. Failures are fetchFailure's: retried, or UnrecoverableError.
 */
export async function fetchForEmbedding(
  pacs: EmbeddingPacs,
  ids: InstanceIds,
  maxBytes: number,
  frameToEmbed: (frames: number) => number,
): Promise<FetchedInstance> {
  try {
    return { bytes: await pacs.retrieveInstance(ids.studyInstanceUid, ids.seriesInstanceUid, ids.sopInstanceUid, {}, { maxBytes }) };
  } catch (err) {
    if (!(err instanceof PacsTooLargeError)) throw fetchFailure('fetch (WADO-RS)', err);
    return fetchOneFrame(pacs, ids, maxBytes, frameToEmbed, err);
  }
}

async function fetchOneFrame(
  pacs: EmbeddingPacs,
  ids: InstanceIds,
  maxBytes: number,
  frameToEmbed: (frames: number) => number,
  instanceTooLarge: PacsTooLargeError,
): Promise<FetchedInstance> {
  const { studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop } = ids;
  const fetching = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      throw fetchFailure('fetch (WADO-RS)', err);
    });
  const metadata = await fetching(pacs.retrieveMetadata(study, series, sop, {}, { maxBytes }));
  try {
    // Pixels refused whatever the frame (float): refused as the whole file would be, no frame fetched.
    checkPixelsSupported(metadata);
  } catch (err) {
    throw singleFrameFailure(err);
  }
  const frames = frameCount(metadata);
  if (frames <= 1) {
    throw new UnrecoverableError(`decode: TOO_LARGE: ${tooLarge(instanceTooLarge)}, and a single-frame instance has no smaller part to fetch`);
  }
  const number = wordAlignedFrame(metadata, frameToEmbed(frames));
  const frame = await fetching(pacs.retrieveFrame(study, series, sop, number, {}, { maxBytes }));
  try {
    const bytes = await singleFrameInstance(metadata, number, frame, (uri) => fetching(pacs.retrieveBulkData(uri, {}, { maxBytes })));
    return { bytes, frame: { number, of: frames } };
  } catch (err) {
    throw singleFrameFailure(err);
  }
}

/** A SingleFrameError as the refusal decoding would record ("decode: CODE: reason"), for good; anything else as it is. */
function singleFrameFailure(err: unknown): unknown {
  return err instanceof SingleFrameError ? new UnrecoverableError(`decode: ${err.code}: ${err.message}`) : err;
}

/**
 * A one-frame object's result as the stored instance's: the frame's number there (the document's
 * `frame`, and the one a refusal of that frame names), its frame count.
 */
export function asStoredFrame(r: EmbedResult, frame: FetchedInstance['frame']): EmbedResult {
  if (!frame) return r;
  if (!r.ok) return { ...r, reason: r.reason.replace(/^frame 1: /, `frame ${frame.number}: `) };
  return { ok: true, meta: { ...r.meta, numberOfFrames: frame.of }, vectors: r.vectors.map((v) => ({ ...v, frameNumber: frame.number })) };
}

const OPTIONAL_TEXT = new Set(['modality', 'bodyPartExamined', 'label']);

export function toDoc(meta: InstanceMeta, ids: Pick<IndexJobData, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>, vector: Float32Array, frame: number, modelVersion: string, key: string | undefined): VectorDoc {
  const fields = {
    // The PACS's own UIDs (from its listing or STOW answer), not the file's: a PACS that coerced
    // them, or split or merged a study, answers access checks and the reconciler by its own, and a
    // document under the file's was pruned as moved and indexed again on every pass.
    sopInstanceUid: ids.sopInstanceUid,
    studyInstanceUid: ids.studyInstanceUid,
    seriesInstanceUid: ids.seriesInstanceUid,
    sopClassUid: meta.sopClassUid,
    // Code strings as the standard writes them (upper case, trimmed): many archives store
    // "Brain" or "Abdomen", and /similar's filters match exactly.
    modality: meta.modality?.trim().toUpperCase() || undefined,
    bodyPartExamined: meta.bodyPartExamined?.trim().toUpperCase() || undefined,
    label: meta.label?.className,
    patientKey: key,
    frame,
    modelVersion,
    indexedAt: new Date().toISOString(),
    vector,
  };
  // An optional text over the index's limit (a label line of a 10 KiB Image Comments) is left
  // out, rather than the image refused for it.
  return Object.fromEntries(
    Object.entries(fields).filter(([k, v]) => v !== undefined && !(OPTIONAL_TEXT.has(k) && typeof v === 'string' && v.length > MAX_TEXT_FIELD)),
  ) as unknown as VectorDoc;
}

/** What an index job does besides reading its data: startWorkers' steps, or a test's stand-ins. */
export interface IndexJobSteps {
  /** The model version this worker embeds with. */
  readonly version: string;
  /** Fetch and embed the instance: a refusal comes back as a value; PACS faults as fetchFailure's errors; anything else thrown. */
  embed(ids: InstanceIds): Promise<EmbedResult>;
  write(doc: VectorDoc): Promise<void>;
  keyOf(meta: InstanceMeta): string | undefined;
  /** Runs `fn` while it holds an instance (fetch → decode → embed), bounded by decodeConcurrency. */
  holdingInstance<T>(fn: () => Promise<T>): Promise<T>;
  /** A job for another model version is being put back. */
  onOtherModel(jobModel: string): void;
  onIndexed?(job: IndexJobData, msToSearchable: number): void;
}

/**
 * The index queue's job handler. A decoder refusal is permanent (UnrecoverableError "decode: CODE:
 * reason"); what the decoder throws instead (out of memory, codecs unavailable: core/dicom/resources.ts)
 * is passed on as it is, so BullMQ retries the job with backoff like a PACS outage.
 */
export function indexJobProcessor(steps: IndexJobSteps) {
  const { version } = steps;
  return async (job: Job<IndexJobData, IndexJobResult>, token?: string): Promise<IndexJobResult> => {
    const d = job.data;
    if (d.modelVersion !== version) {
      // Another model's job: put it back for a worker of that version. Completing it as
      // "skipped" lost it (the reconciler counts a completed job as queued until it is removed).
      if (Date.now() - d.enqueuedAt > OTHER_MODEL_MAX_AGE_MS)
        throw new UnrecoverableError(
          `model version ${d.modelVersion}: no worker of that version took the job (this worker runs ${version}); ` +
            'run one, then `cbmir failed --retry`, or let the reconciler index the instance with the live version',
        );
      steps.onOtherModel(d.modelVersion);
      await job.moveToDelayed(Date.now() + OTHER_MODEL_DELAY_MS, token);
      throw new DelayedError();
    }
    const { doc, frame } = await steps.holdingInstance(async () => {
      const r = await steps.embed(d);
      if (!r.ok) throw new UnrecoverableError(`decode: ${r.code}: ${r.reason}`);
      const v = r.vectors[0];
      if (!v) throw new UnrecoverableError('decode: no frame to embed');
      return { doc: toDoc(r.meta, d, v.vector, v.frameNumber, version, steps.keyOf(r.meta)), frame: v.frameNumber };
    });
    await steps.write(doc);
    steps.onIndexed?.(d, Date.now() - d.enqueuedAt);
    return { status: 'indexed', sopInstanceUid: d.sopInstanceUid, modelVersion: version, frame, indexedAt: new Date().toISOString() };
  };
}

/** What an embed-queue job does besides reading its data: startWorkers' steps, or a test's stand-ins. */
export interface EmbedJobSteps {
  /** The model version this worker embeds with. */
  readonly version: string;
  /** Fetch and embed an archived instance: a refusal as a value, or UnrecoverableError; PACS faults thrown. */
  embedInstance(ids: InstanceIds): Promise<EmbedResult>;
  /** Embed an uploaded file. */
  embedDicom(bytes: Uint8Array): Promise<EmbedResult>;
  heatmap(d: HeatmapJobData): Promise<HeatmapJobResult>;
  write(doc: VectorDoc): Promise<void>;
  keyOf(meta: InstanceMeta): string | undefined;
  /** A job for another model version is being put back. */
  onOtherModel(jobModel: string): void;
  /** How long such a job may be put back (deferOtherModelEmbed). */
  readonly otherModelMaxAgeMs: number;
}

/** The job's uploaded files dropped from Redis (best effort: the job may be gone already). */
async function dropUploads(job: Pick<Job<EmbedQueueJobData, EmbedQueueJobResult>, 'data' | 'updateData'>): Promise<void> {
  const bare = withoutUploads(job.data);
  if (bare) await job.updateData(bare).catch(() => undefined);
}

/**
 * The embed queue's job handler: a query vector for an instance or an upload, or a heatmap. An
 * uploaded file is blanked in the job once used, and when the job fails for good, so that Redis
 * keeps it no longer than the request needs it.
 */
export function embedJobProcessor(steps: EmbedJobSteps) {
  const { version } = steps;
  return async (job: Job<EmbedQueueJobData, EmbedQueueJobResult>, token?: string): Promise<EmbedQueueJobResult> => {
    const d = job.data;
    if (d.modelVersion !== version) {
      // Another model's query: a refusal would reach the user as "this image cannot be searched".
      steps.onOtherModel(d.modelVersion);
      return deferOtherModelEmbed(job, token, version, steps.otherModelMaxAgeMs);
    }
    try {
      return await runEmbedJob(steps, job);
    } catch (err) {
      // A failed job is kept (EMBED_JOB_OPTIONS.removeOnFail, 600 s) and the gateway cannot
      // remove one a worker holds: once no attempt is left, it must not keep the uploaded file
      // with it. Before that the file stays: the retry needs it.
      if (isLastAttempt(job, err)) await dropUploads(job);
      throw err;
    }
  };
}

/** Will BullMQ give the job up when this attempt throws `err`? (Job.shouldRetryJob's rule.) */
function isLastAttempt(job: Pick<Job, 'attemptsMade' | 'opts'>, err: unknown): boolean {
  const unrecoverable = err instanceof UnrecoverableError || (err as Error | undefined)?.name === 'UnrecoverableError';
  return unrecoverable || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

async function runEmbedJob(steps: EmbedJobSteps, job: Job<EmbedQueueJobData, EmbedQueueJobResult>): Promise<EmbedQueueJobResult> {
  const { version } = steps;
  const d = job.data;
  if (d.kind === 'heatmap') {
    const out = await steps.heatmap(d);
    // As for an upload below: a job the gateway could not delete keeps no uploaded file.
    await dropUploads(job);
    return out;
  }
  let r: EmbedResult;
  if (d.kind === 'upload') {
    r = await steps.embedDicom(new Uint8Array(Buffer.from(d.dicomBase64, 'base64')));
    // The gateway deletes the job once answered, but not one a worker still held when the
    // gateway gave up (timeout): that job would keep the image in Redis until it expires.
    await dropUploads(job);
  } else {
    try {
      r = await steps.embedInstance(d);
    } catch (err) {
      if (err instanceof UnrecoverableError) return { status: 'refused', reason: err.message };
      throw err;
    }
  }
  if (!r.ok) return { status: 'refused', reason: `${r.code}: ${r.reason}` };
  const v = r.vectors[0];
  if (!v) return { status: 'refused', reason: 'no frame to embed' };
  const key = steps.keyOf(r.meta);
  if (d.kind === 'instance' && d.index) await steps.write(toDoc(r.meta, d, v.vector, v.frameNumber, version, key));
  const m = r.meta;
  const out: Record<string, unknown> = {
    status: 'embedded',
    vector: Array.from(v.vector),
    modelVersion: version,
    frame: v.frameNumber,
    studyInstanceUid: m.studyInstanceUid,
    seriesInstanceUid: m.seriesInstanceUid,
    sopInstanceUid: m.sopInstanceUid,
    modality: m.modality,
    bodyPartExamined: m.bodyPartExamined,
    patientKey: key,
  };
  return Object.fromEntries(Object.entries(out).filter(([, x]) => x !== undefined)) as EmbedQueueJobResult;
}

export async function startWorkers(deps: WorkerDeps): Promise<RunningWorkers> {
  const { pipeline, index, pacs, log } = deps;
  const version = pipeline.modelVersion;
  await index.ensure(pipeline.dims, version);

  // Bulk writes: jobs finishing together share one upsert call.
  // Per-document refusals come back as values so one bad document fails only its own job.
  const writer = new MicroBatcher<VectorDoc, Error | undefined>(
    async (docs) => {
      const r = await index.upsert(docs, { refresh: 'wait_for' });
      const bad = new Map(r.failed.map((f) => [f.sopInstanceUid, f]));
      return docs.map((d) => {
        const f = bad.get(d.sopInstanceUid);
        return f ? Object.assign(new Error(`index write refused: ${f.reason}`), { transient: f.transient }) : undefined;
      });
    },
    deps.writeBatch ?? 32,
    deps.writeWaitMs ?? 10,
  );

  // Checked on the declared length and while the answer streams, before an instance is held:
  // one cine or whole-slide level could otherwise take the process (and every job in it) down.
  const maxBytes = deps.maxInstanceBytes ?? DEFAULT_MAX_INSTANCE_BYTES;
  const fetchInstance = (ids: InstanceIds): Promise<FetchedInstance> => fetchForEmbedding(pacs, ids, maxBytes, (n) => pipeline.frameToEmbed(n));

  async function embedInstance(ids: InstanceIds): Promise<EmbedResult> {
    const fetched = await fetchInstance(ids);
    return asStoredFrame(await pipeline.embedDicom(fetched.bytes), fetched.frame);
  }

  /** Write failures of an index that does not answer (or is overloaded): the index queue waits them out. */
  const indexFaults = new WeakSet<object>();
  async function write(doc: VectorDoc): Promise<void> {
    try {
      const refused = await writer.submit(doc);
      if (refused) throw refused;
    } catch (err) {
      const transient = (err as { transient?: boolean }).transient ?? classifyIndexError(err) === 'transient';
      if (!transient) throw new UnrecoverableError(`index write: ${(err as Error).message}`);
      if (err instanceof Object) indexFaults.add(err);
      throw err;
    }
  }

  const keyOf = (meta: InstanceMeta) => patientKey(deps.patientKeySecret, meta.patientId, meta.issuerOfPatientId ?? '');

  // A job is searchable only after the bulk write's refresh=wait_for (up to the index's 1-s
  // refresh interval): jobs spend most of their time there, holding nothing but a vector, so
  // many are kept in flight (concurrency) while the ones holding an instance are bounded here.
  const decodeSlots = pLimit(deps.decodeConcurrency ?? 32);

  let warnedOtherModelAt = 0;
  const warnOtherModel = (jobModel: string): void => {
    if (Date.now() - warnedOtherModelAt < 60_000) return;
    warnedOtherModelAt = Date.now();
    log.warn(
      { jobModel, workerModel: version },
      'job for another model version put back for a worker of that version: is CBMIR_MODEL the same on the gateway and every worker?',
    );
  };
  const processIndexJob = indexJobProcessor({
    version,
    embed: embedInstance,
    write,
    keyOf,
    holdingInstance: decodeSlots,
    onOtherModel: warnOtherModel,
    ...(deps.onIndexed ? { onIndexed: deps.onIndexed } : {}),
  });

  // While the index does not answer, each index job would still be fetched from the PACS and
  // embedded, then fail its write, 12 times over about 70 minutes, and the whole backlog end up
  // failed. Instead the queue is paused (BullMQ's manual rate limit, for every worker of it:
  // jobs go back to waiting, not counted as attempts), and after each pause one cheap read of
  // the index decides whether jobs go on. Only an index that does not answer a read pauses the
  // queue: one that reads but refuses writes (a disk watermark's read-only block, a full disk)
  // would pass every probe and pause again for ever, so its jobs fail and retry as before and
  // end in `cbmir failed`.
  const pauseMs = deps.indexDownPauseMs ?? 5_000;
  let indexDownSince: number | undefined;
  let probing: Promise<boolean> | undefined;
  /** Whether the index answers a read: one request at a time in this process, shared by the jobs asking. */
  const indexAnswers = (): Promise<boolean> =>
    (probing ??= index
      .count()
      .then(
        () => true,
        (err: unknown) => classifyIndexError(err) !== 'transient', // another fault: each job meets it itself
      )
      .finally(() => {
        probing = undefined;
      }));
  const waitForIndex = async (err?: unknown): Promise<never> => {
    if (indexDownSince === undefined) {
      indexDownSince = Date.now();
      log.warn(
        { err: (err as Error | undefined)?.message },
        `the index does not answer: index jobs wait in the queue (not counted as attempts) and it is asked again every ${pauseMs / 1000} s`,
      );
    }
    await indexQueue.rateLimit(pauseMs);
    throw Worker.RateLimitError();
  };
  const processIndex = async (job: Job<IndexJobData, IndexJobResult>, token?: string): Promise<IndexJobResult> => {
    if (indexDownSince !== undefined) {
      if (!(await indexAnswers())) await waitForIndex();
      const since = indexDownSince;
      if (since !== undefined) {
        indexDownSince = undefined;
        log.info({ downMs: Date.now() - since }, 'the index answers again: index jobs go on');
      }
    }
    try {
      return await processIndexJob(job, token);
    } catch (err) {
      if (err instanceof Object && indexFaults.has(err) && !(await indexAnswers())) await waitForIndex(err);
      throw err;
    }
  };

  // Similarity heatmaps (workers/heatmap.ts): fetch failures that can never succeed come back as refusals.
  const heatmaps = new HeatmapJobs(pipeline, async (ids) => (await fetchInstance(ids)).bytes);
  // Twice the gateway's wait: past that no /similar request is waiting for the job.
  const otherModelEmbedMaxAgeMs = 2 * (deps.embedTimeoutMs ?? 10_000);

  const processEmbed = embedJobProcessor({
    version,
    embedInstance,
    embedDicom: (bytes) => pipeline.embedDicom(bytes),
    heatmap: (d) => heatmaps.run(d),
    write,
    keyOf,
    onOtherModel: warnOtherModel,
    otherModelMaxAgeMs: otherModelEmbedMaxAgeMs,
  });

  // Counted here (BullMQ keeps no public count): closing waits on Redis only for active jobs.
  let active = 0;
  const counted =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      active++;
      try {
        return await fn(...a);
      } finally {
        active--;
      }
    };

  const conns: Redis[] = [];
  const conn = () => {
    const c = workerConnection(deps.redisUrl);
    c.on('error', () => undefined); // BullMQ reconnects; the 'error' events below are logged once
    conns.push(c);
    return c;
  };
  const common = { stalledInterval: deps.stalledIntervalMs ?? 30_000, maxStalledCount: 3 };
  // Only for the pause (Worker.rateLimit is deprecated for Queue.rateLimit).
  const indexQueue = new Queue<IndexJobData, IndexJobResult>(queueName('index', deps.namespace), { connection: conn() });
  const indexWorker = new Worker<IndexJobData, IndexJobResult>(queueName('index', deps.namespace), counted(processIndex), {
    connection: conn(),
    concurrency: deps.concurrency,
    // Never reached: a limiter makes every worker of the queue honour waitForIndex's pause, not only this one.
    limiter: { max: Number.MAX_SAFE_INTEGER - 1, duration: 1_000 },
    ...common,
  });
  // Interactive queries: their own queue, so a backfill never starves them. Each one holds an
  // instance (an upload's is in the job itself) and none waits on an index refresh, so they are
  // bounded like decodes, not like index jobs.
  const embedWorker = new Worker<EmbedQueueJobData, EmbedQueueJobResult>(queueName('embed', deps.namespace), counted(processEmbed), {
    connection: conn(),
    concurrency: embedConcurrency(deps.concurrency, deps.decodeConcurrency),
    ...common,
  });
  const logError = workerErrorLogger(log, deps.redisUrl);
  for (const [name, w] of [['index', indexWorker], ['embed', embedWorker]] as const) {
    w.on('failed', (job, err) => {
      const permanent = err instanceof UnrecoverableError || (job && job.attemptsMade >= (job.opts.attempts ?? 1));
      log[permanent ? 'warn' : 'info']({ queue: name, jobId: job?.id, attempt: job?.attemptsMade, err: err.message }, permanent ? 'job failed permanently' : 'job failed, will retry');
      if (permanent) deps.onFailed?.(name, err.message);
    });
    w.on('error', (err) => logError(name, err));
  }

  const redisConnected = () => conns.every((c) => c.status === 'ready');
  return {
    index: indexWorker,
    embed: embedWorker,
    activeJobs: () => active,
    redisConnected,
    async ready() {
      await Promise.all([indexWorker.waitUntilReady(), embedWorker.waitUntilReady()]);
    },
    async close() {
      // Let in-flight jobs finish, then flush pending writes. Without Redis nothing is waited for:
      // a graceful close sends QUIT, which waits for Redis to come back, and a job could not report
      // its result anyway (another worker's stalled check takes it). With Redis and no job active,
      // a graceful close returns at once.
      const force = !redisConnected();
      await Promise.all([indexWorker.close(force), embedWorker.close(force)]);
      await indexQueue.close();
      await writer.close();
      await heatmaps.close();
      for (const c of conns) c.disconnect();
    },
  };
}
