/**
 * A whole retrieval system in one process for the /similar tests: a gateway in
 * front of a test Orthanc with the STOW indexing hook and /similar attached, and
 * in-process workers (index + embed queues) with the shipped model — unique queue
 * namespace and a unique Elasticsearch index per system, so runs never share jobs
 * or documents. Plus: real images with fresh UIDs (a figshare slice re-wrapped as
 * a new instance), for "not in the archive" and "in the PACS but not indexed".
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, type Config } from '../../core/config.js';
import { queueName } from '../../core/jobs.js';
import { writeMrInstance } from '../../core/dicom/mr-writer.js';
import { decodeSourceImage } from '../../core/dicom/source-image.js';
import { ElasticsearchIndex } from '../../core/index/elasticsearch/es-index.js';
import { createLogger } from '../../core/log.js';
import { loadModelManifest } from '../../core/model-manifest.js';
import { PacsClient } from '../../core/pacs/client.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { createGateway, type Gateway } from '../../gateway/server.js';
import { attachSimilar, type SimilarHandle } from '../../gateway/similar.js';
import { attachStowIndexing } from '../../gateway/stow-indexing.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { startWorkers, type RunningWorkers } from '../../workers/index-worker.js';
import { figshareSampleDir } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';

export const silent = createLogger('silent');

export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export interface SimilarGateway {
  readonly gw: Gateway;
  readonly config: Config;
  readonly base: string;
  readonly index: ElasticsearchIndex;
  readonly similar: SimilarHandle;
  close(): Promise<void>;
}

/** Gateway + STOW hook + /similar on queue namespace `ns`, reading ES index alias `esBase`. */
export async function startSimilarGateway(opts: {
  ns: string;
  esBase: string;
  env?: Record<string, string>;
  /** Attach the STOW indexing hook (default true). Off for a gateway whose Redis is down: IndexEnqueuer.close() then waits forever. */
  indexing?: boolean;
  /** Elasticsearch URL (default the test stack's). */
  esUrl?: string;
}): Promise<SimilarGateway> {
  const stack = testStack();
  const config = loadConfig({
    CBMIR_PACS_URL: stack.orthancDicomWebUrl,
    CBMIR_REDIS_URL: stack.redisUrl,
    CBMIR_LOG_LEVEL: 'silent',
    CBMIR_PACS_TIMEOUT_MS: '5000',
    CBMIR_SHUTDOWN_GRACE_MS: '500',
    CBMIR_EMBED_TIMEOUT_MS: '20000',
    ...opts.env,
  });
  const gw = createGateway(config, { defaultMetrics: false, logger: silent });
  const model = loadModelManifest(config.model);
  if (opts.indexing !== false) {
    const enqueuer = new IndexEnqueuer(config.redisUrl, model.version, {
      namespace: opts.ns,
    });
    attachStowIndexing(gw, enqueuer, silent);
    gw.addCloseHook(() => enqueuer.close());
  }
  const index = new ElasticsearchIndex({ url: opts.esUrl ?? stack.esUrl, base: opts.esBase });
  const similar = attachSimilar(gw, {
    config,
    index,
    modelVersion: model.version,
    logger: silent,
    queueNamespace: opts.ns,
  });
  gw.addCloseHook(() => index.close());
  const addr = await gw.listen(0, '127.0.0.1');
  return {
    gw,
    config,
    base: `http://127.0.0.1:${addr.port}`,
    index,
    similar,
    close: () => gw.close(),
  };
}

export interface WorkerSet {
  readonly workers: RunningWorkers;
  readonly index: ElasticsearchIndex;
  close(): Promise<void>;
}

/** Index + embed workers on namespace `ns`, writing to ES alias `esBase`, fetching from `pacsUrl`. */
export async function startTestWorkers(opts: {
  ns: string;
  esBase: string;
  pipeline: EmbeddingPipeline;
  pacsUrl?: string;
  pacsUser?: string;
  pacsPassword?: string;
}): Promise<WorkerSet> {
  const stack = testStack();
  const index = new ElasticsearchIndex({ url: stack.esUrl, base: opts.esBase });
  const pacs = new PacsClient({
    url: opts.pacsUrl ?? stack.orthancDicomWebUrl,
    user: opts.pacsUser,
    password: opts.pacsPassword,
    timeoutMs: 10_000,
  });
  const workers = await startWorkers({
    redisUrl: stack.redisUrl,
    pipeline: opts.pipeline,
    index,
    pacs,
    patientKeySecret: 'similar-test-patient-key-secret-0123456789',
    log: silent,
    concurrency: 2,
    namespace: opts.ns,
    stalledIntervalMs: 5_000,
  });
  return {
    workers,
    index,
    close: async () => {
      await workers.close();
      await pacs.close();
      await index.close();
    },
  };
}

export interface FreshInstance {
  readonly bytes: Uint8Array;
  readonly study: string;
  readonly series: string;
  readonly sop: string;
  readonly patientId: string;
}

function freshUid(): string {
  return `2.25.${BigInt(`0x${randomBytes(15).toString('hex')}`).toString()}`;
}

/**
 * A real figshare slice (`images/N.jpg` of the sample) as a new MR instance with fresh
 * UIDs and a fresh patient: the same pixels as the archived copy, so its embedding
 * must equal the stored one.
 */
export async function freshInstance(file: string): Promise<FreshInstance> {
  const img = await decodeSourceImage(await readFile(path.join(figshareSampleDir, file)));
  const study = freshUid();
  const series = freshUid();
  const sop = freshUid();
  const patientId = `SIMTEST${randomBytes(4).toString('hex').toUpperCase()}`;
  const bytes = writeMrInstance({
    pixels: img.pixels,
    rows: img.rows,
    cols: img.cols,
    bitsStored: img.bitsStored,
    studyInstanceUid: study,
    seriesInstanceUid: series,
    sopInstanceUid: sop,
    patientId,
    patientName: `similar-test^${patientId}`,
    seriesNumber: 1,
    instanceNumber: 1,
    studyDate: '20250101',
    bodyPartExamined: 'BRAIN',
    ...(img.lossy ? { lossySource: { method: 'ISO_10918_1' } } : {}),
  });
  return { bytes, study, series, sop, patientId };
}

/** BullMQ connection options for the test Redis. */
export function redisConnection(): {
  host: string;
  port: number;
  maxRetriesPerRequest: null;
} {
  const u = new URL(testStack().redisUrl);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    maxRetriesPerRequest: null,
  };
}

/** Remove a test namespace's queues from Redis. */
export async function dropQueues(ns: string): Promise<void> {
  for (const kind of ['index', 'embed'] as const) {
    const q = new Queue(queueName(kind, ns), { connection: redisConnection() });
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
}

/** Poll until `check` is true (or throw after `timeoutMs`). */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
