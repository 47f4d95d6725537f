/**
 * Worker process: `cbmir worker` (or `tsx workers/main.ts`). Loads the model once,
 * consumes the index and embed queues, writes the vector index.
 *
 * With CBMIR_RECONCILE_INTERVAL_S > 0 (default 300) the process also runs the
 * reconciler (workers/reconcile/periodic.ts): instances that reached the PACS
 * without a job (C-STORE, Redis outage) are enqueued within one interval.
 *
 * Start: the configuration (settings, patient-key secret, model) first, exit 2 when it is wrong;
 * then Redis, once: one that does not answer stops the process (exit 1, naming CBMIR_REDIS_URL)
 * before the queues are attached. "worker ready" is logged once both queues' connections are up.
 *
 * Shutdown order on SIGTERM/SIGINT: stop the reconciler → stop taking jobs and let
 * in-flight ones finish (BullMQ close; with none active, or Redis down, nothing is waited
 * for) → flush pending index writes → release the ONNX session → close index and PACS
 * clients; exit 0. Not done within CBMIR_SHUTDOWN_GRACE_MS + 10 s: exit 1. A second signal
 * exits at once (1).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../core/config.js';
import { createLogger } from '../core/log.js';
import { createVectorIndex } from '../core/index/factory.js';
import { freshSecretProblem, loadPatientKeySecret, PATIENT_KEY_SECRET_FILE } from '../core/index/patient-key.js';
import { PacsClient } from '../core/pacs/client.js';
import { ModelContractError } from '../models/runtime/embedder.js';
import { cpuHasVnni, isInt8Version } from '../models/runtime/int8-cpu.js';
import { EmbeddingPipeline, workerDecodeOptions } from './embedding-pipeline.js';
import { startWorkers } from './index-worker.js';
import { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import { startPeriodicReconciler, type PeriodicReconciler } from './reconcile/periodic.js';
import { OrthancChangeFeed } from './reconcile/orthanc-changes.js';
import { redisProblem } from './command-config.js';

export type SecretAtStart = { secret: string } | { problem: string; exitCode: 1 | 2 };

/**
 * The patient-key secret a worker writes with, or why it must not start. A new secret is only
 * safe over an index known to hold no documents: one that cannot be counted (down, still
 * starting) may hold documents keyed with another, so the secret is created only once the
 * index has answered.
 */
export async function patientKeySecretAtStart(configured: string | undefined, dataDir: string, countDocuments: () => Promise<number>): Promise<SecretAtStart> {
  const file = join(dataDir, PATIENT_KEY_SECRET_FILE);
  if (configured || existsSync(file)) return { secret: loadPatientKeySecret(configured, dataDir) };
  let documents: number;
  try {
    documents = await countDocuments();
  } catch (err) {
    return {
      problem:
        `CBMIR_PATIENT_KEY_SECRET is not set and ${file} does not exist, and the index could not be counted (${(err as Error).message}): ` +
        'a new patient-key secret is only made over an index known to be empty. Start again once the index answers, or set CBMIR_PATIENT_KEY_SECRET',
      exitCode: 1,
    };
  }
  const problem = freshSecretProblem(configured, dataDir, documents);
  return problem ? { problem, exitCode: 2 } : { secret: loadPatientKeySecret(configured, dataDir) };
}

export async function runWorkerProcess(config: Config, opts: { namespace?: string; stalledIntervalMs?: number } = {}): Promise<void> {
  const log = createLogger(config.logLevel, 'worker');
  const index = createVectorIndex(config);
  // Before anything else (the model takes seconds to load): unbound, count() is the live version's.
  const patientKeySecret = await patientKeySecretAtStart(process.env.CBMIR_PATIENT_KEY_SECRET, config.dataDir, () => index.count());
  if ('problem' in patientKeySecret) {
    await index.close();
    process.stderr.write(`cbmir worker: ${patientKeySecret.problem}\n`);
    process.exit(patientKeySecret.exitCode);
  }
  let pipeline: EmbeddingPipeline;
  try {
    pipeline = await EmbeddingPipeline.create({
      model: config.model,
      batchSize: config.worker.batchSize,
      batchWaitMs: config.worker.batchWaitMs,
      ...(config.worker.ortThreads > 0 ? { threads: config.worker.ortThreads } : {}),
      decode: workerDecodeOptions(config),
    });
  } catch (err) {
    if (!(err instanceof ModelContractError)) throw err;
    // A configuration fault (CBMIR_MODEL), as a bad setting is: every job would fail on it.
    await index.close();
    process.stderr.write(`cbmir worker: ${err.message}\n`);
    process.exit(2);
  }
  // Once the configuration is known good (a bad model exits 2 above, whether or not Redis is up),
  // before the queues: without Redis the worker would log "worker ready" and then one connection
  // error per reconnect attempt, forever. Exit 1: systemd (Restart=on-failure) tries again;
  // but a login Redis refuses is a bad setting, as a bad model is (exit 2: not restarted).
  const redis = await redisProblem(config.redisUrl);
  if (redis) {
    await pipeline.close();
    await index.close();
    process.stderr.write(`cbmir worker: ${redis}; not starting\n`);
    process.exit(/\b(?:WRONGPASS|NOAUTH)\b/.test(redis) ? 2 : 1);
  }
  const pacs = new PacsClient({ url: config.pacs.url, user: config.pacs.user, password: config.pacs.password, timeoutMs: config.pacs.timeoutMs });
  const workers = await startWorkers({
    redisUrl: config.redisUrl,
    pipeline,
    index,
    pacs,
    patientKeySecret: patientKeySecret.secret,
    log,
    concurrency: config.worker.concurrency,
    decodeConcurrency: config.worker.decodeConcurrency,
    maxInstanceBytes: config.worker.maxInstanceBytes,
    embedTimeoutMs: config.similar.embedTimeoutMs,
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
    ...(opts.stalledIntervalMs ? { stalledIntervalMs: opts.stalledIntervalMs } : {}),
  });
  let reconciler: PeriodicReconciler | undefined;
  let enqueuer: IndexEnqueuer | undefined;

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) process.exit(1);
    stopping = true;
    const active = workers.activeJobs();
    log.info({ signal, activeJobs: active, redisConnected: workers.redisConnected() }, 'worker shutting down');
    // Bounded: closing waits for active jobs, whose completion retries forever while Redis is
    // down. Cut short, their jobs stay active and another worker's stalled check takes them.
    const limitMs = config.shutdownGraceMs + 10_000;
    setTimeout(() => {
      const left = workers.activeJobs();
      log.error(
        { limitMs, activeJobs: left },
        left > 0
          ? `worker shutdown did not finish in time; exiting (its ${left} active jobs go to another worker)`
          : 'worker shutdown did not finish in time; exiting (no job was active)',
      );
      process.exit(1);
    }, limitMs).unref();
    (async () => {
      await reconciler?.stop();
      await enqueuer?.close();
      await workers.close();
      await pipeline.close();
      await index.close();
      await pacs.close();
    })().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'worker shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  // "ready" means jobs can be taken: both queues' main connections are up. A stop meanwhile
  // closes them, which fails this wait: that is the stop, not a failure to start.
  try {
    await workers.ready();
  } catch (err) {
    if (stopping) return;
    throw err;
  }
  if (stopping) return;
  if (config.reconcile.intervalS > 0 || config.reconcile.changesIntervalS > 0) {
    enqueuer = new IndexEnqueuer(config.redisUrl, pipeline.modelVersion, opts.namespace ? { namespace: opts.namespace } : {});
    reconciler = startPeriodicReconciler(
      { pacs, index, enqueuer, log },
      {
        redisUrl: config.redisUrl,
        intervalS: config.reconcile.intervalS,
        maxRequestsPerSecond: config.reconcile.maxRequestsPerSecond,
        log,
        ...(config.reconcile.changesIntervalS > 0
          ? {
              changes: {
                intervalS: config.reconcile.changesIntervalS,
                feed: new OrthancChangeFeed({
                  url: config.reconcile.pacsRestUrl,
                  authorization: config.pacs.user !== undefined ? `Basic ${Buffer.from(`${config.pacs.user}:${config.pacs.password ?? ''}`).toString('base64')}` : undefined,
                  timeoutMs: config.pacs.timeoutMs,
                }),
              },
            }
          : {}),
      },
    );
  }
  log.info(
    { reconcileIntervalS: config.reconcile.intervalS, changesIntervalS: config.reconcile.changesIntervalS, model: pipeline.modelName, version: pipeline.modelVersion, ep: pipeline.embedder.executionProvider, backend: index.backend, concurrency: config.worker.concurrency },
    'worker ready',
  );
  if (isInt8Version(pipeline.modelVersion) && cpuHasVnni() === false) {
    log.warn(
      { version: pipeline.modelVersion },
      'INT8 model on a CPU without VNNI: measured only 1.08x faster than FP32 there, and 0.28 mAP points worse; use the FP32 model (docs/benchmarks.md, "INT8")',
    );
  }
}
