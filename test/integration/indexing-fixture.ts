/**
 * Shared pieces of the indexing integration tests (test/integration/indexing-*.test.ts):
 * a unique queue namespace / Elasticsearch index base / embedded data dir per test,
 * real images loaded as DICOM with a unique dataset name (unique UIDs, so tests never
 * share instances with each other or with earlier runs), workers in-process or as
 * `cbmir worker` child processes, polling helpers and clean-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Client } from '@elastic/elasticsearch';
import { createVectorIndex } from '../../core/index/factory.js';
import type { VectorIndex } from '../../core/index/types.js';
import { queueName, type IndexJobData } from '../../core/jobs.js';
import { createLogger } from '../../core/log.js';
import { PacsClient } from '../../core/pacs/client.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { runLoad, type LoadSummary } from '../../workers/load.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { startWorkers, type RunningWorkers } from '../../workers/index-worker.js';
import { repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { deleteStudies } from './gateway-fixture.js';

/** A unique, lower-case name for queues, ES indices and dataset names. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

export type Backend = 'elasticsearch' | 'embedded';

/** Where one test keeps its index: an ES index base, or a temp dir for the embedded store. */
export interface IndexPlace {
  readonly backend: Backend;
  readonly env: Record<string, string>;
  open(): VectorIndex;
  cleanup(): Promise<void>;
}

export function indexPlace(backend: Backend, name: string, esUrl = testStack().esUrl): IndexPlace {
  if (backend === 'elasticsearch') {
    const base = `cbmir-test-${name}`.toLowerCase();
    return {
      backend,
      env: { CBMIR_ES_URL: esUrl, CBMIR_ES_INDEX: base },
      open: () => createVectorIndex({ es: { url: esUrl, index: base }, dataDir: os.tmpdir() }),
      async cleanup() {
        const es = new Client({ node: testStack().esUrl });
        try {
          await es.indices.delete({ index: `${base}*`, ignore_unavailable: true, allow_no_indices: true } as never);
        } catch {
          // nothing to delete
        } finally {
          await es.close();
        }
      },
    };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cbmir-idx-'));
  return {
    backend,
    env: { CBMIR_DATA_DIR: dir },
    open: () => createVectorIndex({ es: undefined, dataDir: dir }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The shipped model's pipeline, loaded once per test file (loading costs seconds). */
let pipelinePromise: Promise<EmbeddingPipeline> | undefined;
export function sharedPipeline(): Promise<EmbeddingPipeline> {
  pipelinePromise ??= EmbeddingPipeline.create({ batchSize: 16, batchWaitMs: 20 });
  return pipelinePromise;
}

export async function closeSharedPipeline(): Promise<void> {
  if (pipelinePromise) await (await pipelinePromise).close();
  pipelinePromise = undefined;
}

const quietLog = createLogger('silent', 'test-worker');

/** Index/embed workers in this process, writing `index`. */
export async function inProcessWorkers(opts: {
  namespace: string;
  index: VectorIndex;
  redisUrl?: string;
  concurrency?: number;
  pacsUrl?: string;
  /** Wraps the workers' PACS client (to count its calls). */
  wrapPacs?: (pacs: PacsClient) => PacsClient;
  indexDownPauseMs?: number;
}): Promise<{ workers: RunningWorkers; pacs: PacsClient; close(): Promise<void> }> {
  const pacs = new PacsClient({ url: opts.pacsUrl ?? testStack().orthancDicomWebUrl, timeoutMs: 10_000 });
  const workers = await startWorkers({
    ...(opts.indexDownPauseMs ? { indexDownPauseMs: opts.indexDownPauseMs } : {}),
    redisUrl: opts.redisUrl ?? testStack().redisUrl,
    pipeline: await sharedPipeline(),
    index: opts.index,
    pacs: opts.wrapPacs ? opts.wrapPacs(pacs) : pacs,
    patientKeySecret: 'indexing-test-secret-0123456789',
    log: quietLog,
    concurrency: opts.concurrency ?? 4,
    namespace: opts.namespace,
    stalledIntervalMs: 1000,
  });
  return {
    workers,
    pacs,
    async close() {
      await workers.close();
      await pacs.close();
    },
  };
}

/** `cbmir worker` as a child process (killable with SIGKILL). */
export function spawnWorker(
  env: Record<string, string>,
  namespace: string,
): { child: ChildProcess; output(): string; stop(): Promise<void> } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'workers/cli.ts'), 'worker', '--namespace', namespace, '--stalled-interval-ms', '1000'],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        CBMIR_PACS_URL: testStack().orthancDicomWebUrl,
        CBMIR_REDIS_URL: testStack().redisUrl,
        CBMIR_LOG_LEVEL: 'info',
        CBMIR_RECONCILE_INTERVAL_S: '0',
        CBMIR_PATIENT_KEY_SECRET: 'indexing-test-secret-0123456789',
        CBMIR_WORKER_CONCURRENCY: '4',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Poll `probe` until it returns a truthy value; the last value is in the timeout message. */
export async function waitFor<T>(what: string, probe: () => Promise<T>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)}${lastErr ? `, error: ${(lastErr as Error).message}` : ''})`,
  );
}

/** Real images as DICOM with UIDs of their own: a dataset folder loaded under a unique dataset name. */
export async function loadAs(
  dir: string,
  datasetName: string,
  url: string,
  extra: { limit?: number; mode?: 'send' | 'write'; outDir?: string } = {},
): Promise<{ summary: LoadSummary; instances: PlannedInstance[] }> {
  const summary = await runLoad({
    dir,
    datasetName,
    mode: extra.mode ?? 'send',
    ...(extra.mode === 'write' ? { outDir: extra.outDir } : { url }),
    studyDate: '20240101',
    batchSize: 8,
    concurrency: 2,
    retries: 0,
    ...(extra.limit ? { filters: { limit: extra.limit } } : {}),
  });
  const plan = await readDataset(dir, datasetName);
  const instances = extra.limit ? plan.instances.slice(0, extra.limit) : plan.instances;
  return { summary, instances };
}

/** Delete the studies of these instances from the test Orthanc. */
export async function deleteLoaded(instances: readonly { studyInstanceUid: string }[]): Promise<void> {
  await deleteStudies(
    testStack().orthancUrl,
    instances.map((i) => i.studyInstanceUid),
  );
}

export function indexQueue(namespace: string, redisUrl = testStack().redisUrl): Queue<IndexJobData> {
  const u = new URL(redisUrl);
  const q = new Queue<IndexJobData>(queueName('index', namespace), {
    connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null },
  });
  q.on('error', () => undefined);
  return q;
}

/** Remove every key of a namespace's queues. */
export async function dropQueues(namespace: string, redisUrl = testStack().redisUrl): Promise<void> {
  for (const kind of ['index', 'embed'] as const) {
    const u = new URL(redisUrl);
    const q = new Queue(queueName(kind, namespace), { connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: 1 } });
    q.on('error', () => undefined);
    try {
      await q.obliterate({ force: true });
    } catch {
      // Redis gone (the outage test) or nothing there
    } finally {
      await q.close().catch(() => undefined);
    }
  }
}

export { freePort } from '../helpers/ports.js';

/**
 * A TCP forwarder we can switch off and on: stands in for "Elasticsearch is down"
 * (connections refused, open ones cut) without touching the shared test ES.
 */
export class SwitchableForwarder {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  async up(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
