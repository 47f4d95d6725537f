/**
 * The whole system, live, for benchmarks that query /similar (bench/similar.ts,
 * bench/eval-live.ts): Orthanc, Redis and Elasticsearch from deploy/local/stack.sh
 * (state kept between runs, so a loaded index is reused), the gateway and one
 * `cbmir worker` as child processes, and `cbmir load` (workers/load.ts) STOWing
 * real dataset images through the gateway, as an operator would.
 *
 * Their state (the Orthanc archive, the loaded index) stays on disk between runs,
 * so a later run reuses it; the processes a run started are stopped at its end
 * (stopEnsuredServices) unless CBMIR_BENCH_KEEP_STACK=1, because a JVM and a
 * PACS left idling skew whatever is measured next on the same cores. Those that
 * already ran when the run began are someone else's and are left running.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createVectorIndex } from '../../core/index/factory.js';
import type { VectorIndex } from '../../core/index/types.js';
import { queueName } from '../../core/jobs.js';
import { runLoad, type LoadSummary } from '../../workers/load.js';
import { startChild, stopper, type StartedChild } from './child.js';
import { onInterrupt } from './interrupt.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ServiceSpec {
  /** State directory of deploy/local/stack.sh for this service (absolute). */
  readonly stackDir: string;
  readonly port: number;
  /** Use this running service instead of starting one. */
  readonly url?: string | undefined;
  /** Orthanc instance name in the state dir (default "orthanc"). */
  readonly orthancName?: string;
}

type Service = 'orthanc' | 'redis' | 'es';

/** deploy/local/stack.sh, as ensureService uses it (a stand-in in tests). */
export interface StackRunner {
  /** `stack.sh status <svc>`: its exit status (null: killed by a signal) and output. */
  status(svc: Service, env: NodeJS.ProcessEnv): { code: number | null; out: string };
  start(svc: Service, env: NodeJS.ProcessEnv): void;
  stop(svc: Service, env: NodeJS.ProcessEnv): void;
}

const STACK_SH = path.join(ROOT, 'deploy/local/stack.sh');
const stackSh: StackRunner = {
  status: (svc, env) => {
    const r = spawnSync('bash', [STACK_SH, 'status', svc], { env, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
    return { code: r.status, out: r.stdout ?? '' };
  },
  start: (svc, env) => void execFileSync('bash', [STACK_SH, 'start', svc], { env, stdio: ['ignore', 'ignore', 'inherit'] }),
  stop: (svc, env) => void execFileSync('bash', [STACK_SH, 'stop', svc], { env, stdio: ['ignore', 'ignore', 'inherit'] }),
};

const ensured: { svc: Service; env: NodeJS.ProcessEnv; runner: StackRunner }[] = [];

/**
 * Whether a service found in this state `status` is the benchmark's to stop afterwards:
 * one that already ran belongs to someone else (another benchmark, an operator) and is
 * only used. stack.sh status checks the process, not a pid file a crash left (exit 3:
 * stopped); anything else (1: running but not answering) is not ours to guess about.
 */
export function ownsService(svc: Service, status: { code: number | null; out: string }): boolean {
  if (status.code === 0) return false;
  if (status.code === 3) return true;
  throw new Error(`deploy/local/stack.sh status ${svc} exited ${status.code ?? 'on a signal'}: ${status.out.trim()}`);
}

/** Start (idempotently) one service of the local stack; returns its URL. Only a service this call started is stopped by stopEnsuredServices. */
export function ensureService(svc: Service, spec: ServiceSpec, log: (m: string) => void, runner: StackRunner = stackSh): string {
  if (spec.url) return spec.url.replace(/\/+$/, '');
  const portEnv: Record<string, string> =
    svc === 'orthanc'
      ? { ORTHANC_NAME: spec.orthancName ?? 'orthanc', ORTHANC_HTTP_PORT: String(spec.port), ORTHANC_STABLE_AGE: '2' }
      : svc === 'redis'
        ? { REDIS_PORT: String(spec.port) }
        : { ES_PORT: String(spec.port) };
  const env = { ...process.env, CBMIR_STACK_DIR: spec.stackDir, ...portEnv };
  const ours = ownsService(svc, runner.status(svc, env));
  log(
    `${svc}: ${ours ? 'starting' : 'reusing the running'} one on 127.0.0.1:${spec.port} (deploy/local/stack.sh, state in ${path.relative(ROOT, spec.stackDir)})${ours ? '' : '; left running at the end'}`,
  );
  if (ours) {
    // Registered before the start: one that fails half-way (a JVM up, its health check timed out)
    // is stopped as well.
    if (ensured.length === 0) onInterrupt(() => stopEnsuredServices((m) => process.stderr.write(`${m}\n`)));
    ensured.push({ svc, env, runner });
  }
  // Also when it runs: start waits until it answers.
  runner.start(svc, env);
  return svc === 'redis' ? `redis://127.0.0.1:${spec.port}` : `http://127.0.0.1:${spec.port}`;
}

/**
 * Stop the services ensureService started (their on-disk state stays for the
 * next run), unless CBMIR_BENCH_KEEP_STACK=1. Services given by URL or found
 * running are not ours and are left alone.
 */
export function stopEnsuredServices(log: (m: string) => void): void {
  if (process.env.CBMIR_BENCH_KEEP_STACK === '1') {
    if (ensured.length) log(`CBMIR_BENCH_KEEP_STACK=1: ${ensured.map((e) => e.svc).join(', ')} left running`);
    ensured.length = 0;
    return;
  }
  for (const { svc, env, runner } of ensured.splice(0).reverse()) {
    try {
      runner.stop(svc, env);
    } catch (err) {
      log(
        `${svc}: stop failed (${(err as Error).message}); stop it with CBMIR_STACK_DIR=${env.CBMIR_STACK_DIR} bash deploy/local/stack.sh stop`,
      );
    }
  }
}

export interface LiveUrls {
  readonly orthanc: string;
  readonly redis: string;
  readonly es: string;
  readonly esIndex: string;
  /** CBMIR_DATA_DIR shared by gateway and worker (the patient-key secret lives there). */
  readonly dataDir: string;
}

/** Environment for gateway and worker children. */
export function childEnv(u: LiveUrls, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CBMIR_PACS_URL: `${u.orthanc}/dicom-web`,
    CBMIR_REDIS_URL: u.redis,
    CBMIR_ES_URL: u.es,
    CBMIR_ES_INDEX: u.esIndex,
    CBMIR_DATA_DIR: u.dataDir,
    CBMIR_LOG_LEVEL: 'warn',
    CBMIR_RECONCILE_INTERVAL_S: '0',
    ...extra,
  };
}

export function startGateway(u: LiveUrls, port: number, extra: Record<string, string> = {}): Promise<StartedChild> {
  return startChild(process.execPath, ['--import', 'tsx', path.join(ROOT, 'gateway/main.ts')], {
    env: childEnv(u, { CBMIR_HOST: '127.0.0.1', CBMIR_PORT: String(port), ...extra }),
    readyUrl: `http://127.0.0.1:${port}/healthz`,
    timeoutMs: 60_000,
  });
}

export interface WorkerChild {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  tail(): string;
  stop(): Promise<void>;
}

/** One `cbmir worker` process with the deployment defaults (core/config.ts); ready when it logs "worker ready". */
export function startWorker(u: LiveUrls, extra: Record<string, string> = {}): WorkerChild {
  return spawnWorkerProcess(childEnv(u, { CBMIR_LOG_LEVEL: 'info', ...extra }));
}

/** A `cbmir worker` child process with the given environment; ready once it logs "worker ready". */
export function spawnWorkerProcess(env: NodeJS.ProcessEnv): WorkerChild {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'workers/cli.ts'), 'worker'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const keep = (d: Buffer): void => {
      out = (out + d.toString()).slice(-8000);
      if (out.includes('worker ready')) resolve();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}:\n${out}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, tail: () => out, stop: stopper(child, 15_000) };
}

export function openIndex(u: LiveUrls): VectorIndex {
  return createVectorIndex({ es: { url: u.es, index: u.esIndex }, dataDir: u.dataDir });
}

/** Version of models/manifest.json (what a worker started now embeds with). */
export function manifestVersion(): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'models/manifest.json'), 'utf8')) as { version: string }).version;
}

/**
 * A benchmark-owned index left by an earlier run with another model answers with that
 * model's vectors: drop it (every version behind the alias), so the run re-indexes with
 * `version`, the model its worker embeds with (CBMIR_MODEL, else the shipped one). Returns
 * the model version the index serves afterwards (undefined: empty).
 */
export async function dropIfOtherModel(
  index: VectorIndex,
  u: LiveUrls,
  version: string,
  log: (m: string) => void,
): Promise<string | undefined> {
  let live: string | undefined;
  try {
    live = await index.liveVersion();
  } catch {
    return undefined;
  }
  if (live === undefined || live === version) return live;
  const res = await fetch(`${u.es}/_alias/${encodeURIComponent(u.esIndex)}`);
  const names = res.ok ? Object.keys((await res.json()) as Record<string, unknown>) : [];
  log(`index ${u.esIndex} holds model ${live}'s vectors, not ${version}'s: deleting ${names.join(', ')} to re-index`);
  for (const n of names) {
    const d = await fetch(`${u.es}/${encodeURIComponent(n)}`, { method: 'DELETE' });
    if (!d.ok) throw new Error(`could not delete ${n}: ${d.status} ${await d.text()}`);
  }
  return undefined;
}

/** Documents in the index (0 when it does not exist yet). */
export async function indexCount(index: VectorIndex): Promise<number> {
  try {
    return await index.count();
  } catch {
    return 0;
  }
}

/** `cbmir load` one dataset folder through the gateway under `datasetName` (distinct UIDs per name). */
export async function loadThroughGateway(
  gatewayPort: number,
  dir: string,
  datasetName: string | undefined,
  log: (m: string) => void,
  folds?: readonly number[],
): Promise<LoadSummary> {
  let last = 0;
  const s = await runLoad({
    dir,
    ...(datasetName ? { datasetName } : {}),
    mode: 'send',
    url: `http://127.0.0.1:${gatewayPort}/dicom-web`,
    ...(folds ? { filters: { folds: new Set(folds) } } : {}),
    batchSize: 16,
    concurrency: 2,
    studyDate: '20240101',
    onProgress: (p) => {
      if (p.done - last >= 500 || p.done === p.total) {
        last = p.done;
        log(`  load ${datasetName ?? path.basename(dir)}: ${p.done}/${p.total} sent, ${p.stored} stored, ${p.failed} failed`);
      }
    },
  });
  if (s.failed)
    throw new Error(`cbmir load ${dir} (${datasetName ?? 'default name'}): ${s.failed} images failed: ${s.failures[0]?.reason ?? ''}`);
  return s;
}

/** Wait until the index holds `want` documents and the queue is idle; logs progress. */
export async function waitIndexed(
  u: LiveUrls,
  index: VectorIndex,
  want: number,
  log: (m: string) => void,
  timeoutMs = 3_600_000,
  /** Instead of a count: wait until these instances are all in the index. */
  sops?: readonly string[],
): Promise<number> {
  const conn = new Redis(u.redis, { maxRetriesPerRequest: null });
  conn.on('error', () => undefined);
  const queue = new Queue(queueName('index'), { connection: conn });
  queue.on('error', () => undefined);
  const deadline = Date.now() + timeoutMs;
  let lastLog = 0;
  let idleRounds = 0;
  try {
    for (;;) {
      const n = sops ? (await index.has(sops)).size : await indexCount(index);
      if (sops) want = sops.length;
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed');
      const pending = (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
      if (n >= want) return n;
      idleRounds = pending === 0 ? idleRounds + 1 : 0;
      // Idle queue for a while and still short: jobs failed (or were deduplicated away); say so.
      if (idleRounds >= 20)
        throw new Error(
          `the queue is idle but the index holds ${n} of ${want} documents (failed jobs: ${c.failed ?? 0}; see \`npm run cbmir -- failed\`)`,
        );
      if (Date.now() > deadline) throw new Error(`index holds ${n} of ${want} documents after ${timeoutMs / 1000} s`);
      if (Date.now() - lastLog > 15_000) {
        lastLog = Date.now();
        log(`  indexed ${n}/${want} (queue: ${pending} pending, ${c.failed ?? 0} failed)`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await queue.close().catch(() => undefined);
    conn.disconnect();
  }
}

/**
 * Remove waiting index jobs: once every planned image is indexed, jobs still queued
 * (e.g. for copies indexed by --clone-copies) would only re-embed indexed images and
 * take CPU from what a benchmark measures. Returns how many jobs were waiting.
 */
export async function drainIndexQueue(u: LiveUrls): Promise<number> {
  const conn = new Redis(u.redis, { maxRetriesPerRequest: null });
  conn.on('error', () => undefined);
  const queue = new Queue(queueName('index'), { connection: conn });
  queue.on('error', () => undefined);
  try {
    const c = await queue.getJobCounts('waiting', 'prioritized', 'delayed');
    const n = (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0);
    if (n) await queue.drain(true);
    return n;
  } finally {
    await queue.close().catch(() => undefined);
    conn.disconnect();
  }
}
