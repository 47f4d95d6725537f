/**
 * `npm run bench:ingest` — STOW → searchable, end to end, with the Elasticsearch backend.
 *
 *   tsx bench/ingest.ts [--dataset DIR] [--limit 1000] [--latency-images 300] [--pace 0.8]
 *                       [--workers 2] [--threads 1] [--concurrency 64] [--batch-size 16] [--batch-wait-ms 20]
 *                       [--stow-batch 16] [--stow-concurrency 2] [--gateway-port 18092] [--no-report] [--help]
 *
 * Real parts, as deployed: Orthanc, Redis and Elasticsearch (started with
 * deploy/local/stack.sh in .stack/bench-ingest unless CBMIR_BENCH_ORTHANC_URL /
 * CBMIR_BENCH_REDIS_URL / CBMIR_BENCH_ES_URL point at running ones), the gateway
 * (gateway/main.ts) and `cbmir worker` processes as children. Real images: a dataset
 * folder with labels.csv (--dataset, else CBMIR_BENCH_DATASET, else figshare-cheng in
 * CBMIR_DATASETS, the folder holding the datasets [../shared/datasets]), converted to
 * DICOM up front (the modality's work, not ours) under a dataset name of this run, so
 * every image is a new instance.
 *
 * Two phases after a warm-up:
 *   throughput — STOW --limit images as fast as the client can (batches of --stow-batch,
 *                --stow-concurrency in flight); images_per_s = indexed images / (last
 *                indexed image's job finished − first STOW sent). Jobs finish after the
 *                bulk write with refresh=wait_for, so "finished" means searchable.
 *   latency    — STOW --latency-images one per request, paced at --pace × the measured
 *                throughput (a backlog would measure queueing, not the pipeline);
 *                ms_to_searchable = job finished − STOW answered, per indexed image.
 * Images whose job the worker refused count in neither figure but in `refused` (both
 * phases; bench/lib/ingest-summary.ts). Checks at the end that every image is in the
 * index (indexed), writes the "Ingest" section of docs/benchmarks.md with a verdict on
 * each target of issue #4 (bench/lib/ingest-summary.ts) and prints one JSON object as the
 * last stdout line (targets, targets_met: the same verdicts).
 *
 * The ceiling is measured by the run, on its machine: ceiling_images_per_s = CPUs × 1000
 * ÷ worker_cpu_ms_per_image (the rate if the workers had every CPU to themselves), and
 * ceiling_fraction = images_per_s ÷ ceiling_images_per_s.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Client } from '@elastic/elasticsearch';
import { createVectorIndex } from '../core/index/factory.js';
import { queueName, indexJobId, type IndexJobData } from '../core/jobs.js';
import { loadModelManifest } from '../core/model-manifest.js';
import { readDataset, selectInstances, type PlannedInstance } from '../workers/load/dataset.js';
import { convertInstance } from '../workers/load.js';
import { StowClient } from '../workers/load/stow.js';
import { benchCli, intSetting, orUsageExit, UsageError } from './lib/args.js';
import { startChild, type StartedChild } from './lib/child.js';
import { datasetDir } from './lib/datasets.js';
import {
  ingestVerdicts,
  summariseLatency,
  summariseRefusals,
  summariseThroughput,
  workerCpuCeiling,
  type JobEnd,
  type SentImage as Sent,
} from './lib/ingest-summary.js';
import { ensureService, spawnWorkerProcess, stopEnsuredServices, type WorkerChild } from './lib/live-stack.js';
import { processCpuMs } from './lib/cpu.js';
import { markdownTable, upsertSection } from './lib/report.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const STACK_DIR = path.join(ROOT, '.stack/bench-ingest');

const a = benchCli(
  'bench:ingest',
  `usage: npm run bench:ingest -- [options]   (or: npm run bench -- ingest [options])

STOW → searchable, end to end, with the Elasticsearch backend: a throughput phase, then a
paced latency phase, over real images converted to DICOM. Services: Orthanc, Redis and
Elasticsearch from deploy/local/stack.sh in .stack/bench-ingest, or CBMIR_BENCH_ORTHANC_URL /
CBMIR_BENCH_REDIS_URL / CBMIR_BENCH_ES_URL. Prints one JSON line; writes the "Ingest" section
of docs/benchmarks.md.`,
  {
    dataset: {
      type: 'string',
      default: process.env.CBMIR_BENCH_DATASET || datasetDir('figshare-cheng'),
      value: 'DIR',
      help: 'dataset folder (labels.csv, images/)',
    },
    limit: { type: 'string', default: '1000', value: 'N', help: 'images of the throughput phase' },
    'latency-images': { type: 'string', default: '300', value: 'N', help: 'images of the latency phase (0: none)' },
    pace: { type: 'string', default: '0.8', value: 'X', help: 'latency phase rate, × the measured throughput, in (0, 2]' },
    workers: { type: 'string', default: '2', value: 'N', help: '`cbmir worker` processes' },
    threads: { type: 'string', default: '1', value: 'N', help: 'onnxruntime threads per worker (0: its default)' },
    concurrency: { type: 'string', default: '64', value: 'N', help: 'jobs in flight per worker' },
    'batch-size': { type: 'string', default: '16', value: 'N', help: 'inference micro-batch' },
    'batch-wait-ms': { type: 'string', default: '20', value: 'MS', help: 'micro-batch wait' },
    'stow-batch': { type: 'string', default: '16', value: 'N', help: 'images per STOW request (throughput phase)' },
    'stow-concurrency': { type: 'string', default: '2', value: 'N', help: 'STOW requests in flight (throughput phase)' },
    'gateway-port': { type: 'string', default: '18092', value: 'PORT', help: "the gateway child's port" },
    'no-report': { type: 'boolean', help: 'print the JSON only; leave docs/ alone' },
  },
);

const int = (name: string, v: string | undefined, min = 1): number => orUsageExit('bench:ingest', () => intSetting(`--${name}`, v, min));
const LIMIT = int('limit', a.limit);
const LATENCY_IMAGES = int('latency-images', a['latency-images'], 0);
const PACE = orUsageExit('bench:ingest', () => {
  const p = Number(a.pace);
  if (!(p > 0 && p <= 2)) throw new UsageError(`--pace must be in (0, 2], got ${JSON.stringify(a.pace)}`);
  return p;
});
const WORKERS = int('workers', a.workers);
const CONCURRENCY = int('concurrency', a.concurrency);
// One onnxruntime thread per worker process, one process per core: measured 49 ms CPU per
// image against 65 ms with 2 threads in one process (spinning intra-op threads), see docs/indexing.md.
const THREADS = int('threads', a.threads, 0);
const BATCH = int('batch-size', a['batch-size']);
const BATCH_WAIT = int('batch-wait-ms', a['batch-wait-ms'], 0);
const STOW_BATCH = int('stow-batch', a['stow-batch']);
const STOW_CONCURRENCY = int('stow-concurrency', a['stow-concurrency']);
// Its own default: bench:proxy's L4 pipe listens on 18089, bench:similar's gateway on 18090, eval:live's on 18091.
const GATEWAY_PORT = orUsageExit('bench:ingest', () => intSetting('--gateway-port', a['gateway-port'], 1, 65_535));
const WARMUP = 16;

const log = (msg: string): void => {
  process.stderr.write(`[bench:ingest] ${msg}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (!existsSync(path.join(a.dataset, 'labels.csv'))) {
    process.stderr.write(
      `bench:ingest: no dataset at ${a.dataset} (a folder with labels.csv and images/). ` +
        'Pass --dataset DIR or CBMIR_BENCH_DATASET, or set CBMIR_DATASETS to the folder holding figshare-cheng/ (3,064 images).\n',
    );
    process.exit(2);
  }
  const runId = `bench-ingest-${Date.now().toString(36)}`;
  const plan = await readDataset(a.dataset, runId);
  const need = WARMUP + LIMIT + LATENCY_IMAGES;
  if (plan.instances.length < need)
    throw new Error(
      `${a.dataset} holds ${plan.instances.length} images; this run needs ${need} (warm-up ${WARMUP} + --limit + --latency-images)`,
    );
  const model = loadModelManifest(process.env.CBMIR_MODEL);

  // Given by URL, or started in .stack/bench-ingest and stopped after (bench/lib/live-stack.ts).
  const orthancUrl = ensureService(
    'orthanc',
    { stackDir: STACK_DIR, port: 18059, url: process.env.CBMIR_BENCH_ORTHANC_URL, orthancName: 'bench-orthanc' },
    log,
  );
  const redisUrl = ensureService('redis', { stackDir: STACK_DIR, port: 16381, url: process.env.CBMIR_BENCH_REDIS_URL }, log);
  const esUrl = ensureService('es', { stackDir: STACK_DIR, port: 19202, url: process.env.CBMIR_BENCH_ES_URL }, log);
  const esIndex = runId;
  const gatewayPort = GATEWAY_PORT;
  const common: NodeJS.ProcessEnv = {
    ...process.env,
    CBMIR_PACS_URL: `${orthancUrl}/dicom-web`,
    CBMIR_REDIS_URL: redisUrl,
    CBMIR_ES_URL: esUrl,
    CBMIR_ES_INDEX: esIndex,
    CBMIR_DATA_DIR: path.join(STACK_DIR, 'data'),
    CBMIR_LOG_LEVEL: 'warn',
  };
  const queueConn = new Redis(redisUrl, { maxRetriesPerRequest: null });
  queueConn.on('error', () => undefined);
  const queue = new Queue<IndexJobData>(queueName('index'), { connection: queueConn });
  queue.on('error', () => undefined);
  let gateway: StartedChild | undefined;
  const workers: WorkerChild[] = [];
  // Only a queue this run found idle (and then filled) is emptied afterwards: the guard below must
  // never lead to deleting someone else's jobs.
  let ownQueue = false;
  try {
    const pending = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    if (Object.values(pending).some((n) => n > 0))
      throw new Error(`the queue ${queue.name} on ${redisUrl} already has jobs (${JSON.stringify(pending)}): use an idle Redis`);
    ownQueue = true;

    // 1. DICOM up front (client-side work; not timed).
    const chosen = selectInstances(plan, { limit: need });
    log(`converting ${chosen.length} images of ${a.dataset} to DICOM in memory (dataset name ${runId})`);
    const bytes = new Map<string, Uint8Array>();
    for (const inst of chosen) bytes.set(inst.sopInstanceUid, await convertInstance(a.dataset, inst, '20240101'));
    const warm = chosen.slice(0, WARMUP);
    const thr = chosen.slice(WARMUP, WARMUP + LIMIT);
    const lat = chosen.slice(WARMUP + LIMIT);

    // 2. Gateway and workers.
    gateway = await startChild(process.execPath, ['--import', 'tsx', path.join(ROOT, 'gateway/main.ts')], {
      env: { ...common, CBMIR_HOST: '127.0.0.1', CBMIR_PORT: String(gatewayPort) },
      readyUrl: `http://127.0.0.1:${gatewayPort}/healthz`,
      timeoutMs: 60_000,
    });
    for (let i = 0; i < WORKERS; i++) {
      workers.push(
        spawnWorkerProcess({
          ...common,
          CBMIR_WORKER_CONCURRENCY: String(CONCURRENCY),
          CBMIR_BATCH_SIZE: String(BATCH),
          CBMIR_BATCH_WAIT_MS: String(BATCH_WAIT),
          CBMIR_RECONCILE_INTERVAL_S: '0',
          CBMIR_ORT_THREADS: String(THREADS),
          CBMIR_LOG_LEVEL: 'info', // 'worker ready' is an info line; the worker logs nothing per successful job
        }),
      );
    }
    await Promise.all(workers.map((w) => w.ready));
    log(
      `gateway on :${gatewayPort}, ${WORKERS} worker process(es) (${THREADS || 'default'} ORT thread(s), concurrency ${CONCURRENCY}, batch ${BATCH}/${BATCH_WAIT} ms), model ${model.version}`,
    );
    const stow = new StowClient({ url: `http://127.0.0.1:${gatewayPort}/dicom-web`, retries: 0, connections: STOW_CONCURRENCY + 1 });

    const send = async (list: readonly PlannedInstance[], perRequest: number, inFlight: number, paceMs = 0): Promise<Sent[]> => {
      const sent: Sent[] = [];
      const batches: PlannedInstance[][] = [];
      for (let i = 0; i < list.length; i += perRequest) batches.push(list.slice(i, i + perRequest));
      let next = 0;
      const t0 = performance.now();
      const lane = async () => {
        for (;;) {
          const k = next++;
          const b = batches[k];
          if (!b) return;
          if (paceMs) {
            const due = t0 + k * paceMs - performance.now();
            if (due > 0) await sleep(due);
          }
          const sentAt = Date.now();
          const r = await stow.store(b.map((i) => ({ sopInstanceUid: i.sopInstanceUid, bytes: bytes.get(i.sopInstanceUid)! })));
          const answeredAt = Date.now();
          if (r.failed.size) throw new Error(`STOW failed for ${r.failed.size} images: ${[...r.failed.values()][0]}`);
          for (const i of b) sent.push({ sop: i.sopInstanceUid, sentAt, answeredAt });
        }
      };
      await Promise.all(Array.from({ length: paceMs ? Math.max(inFlight, 8) : inFlight }, lane));
      return sent;
    };

    /** Wait until every job of these instances finished; their finishedOn by SOP UID. */
    const finished = async (sops: readonly string[], timeoutMs: number): Promise<Map<string, JobEnd>> => {
      const done = new Map<string, JobEnd>();
      const deadline = Date.now() + timeoutMs;
      // Cheap polling first (queue counts), so the load generator does not compete with
      // the workers for the CPU; then one look at each job. finishedOn is recorded by the
      // worker, so how often we poll does not change the measured times.
      let idle = 0;
      while (idle < 2 && Date.now() < deadline) {
        const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        idle = Object.values(c).every((n) => n === 0) ? idle + 1 : 0;
        await sleep(500);
      }
      let todo = [...sops];
      while (todo.length && Date.now() < deadline) {
        const jobs = await Promise.all(todo.map((s) => queue.getJob(indexJobId(s, model.version))));
        todo = todo.filter((s, k) => {
          const j = jobs[k];
          // A job that failed an attempt and then completed keeps its failedReason: success is the
          // return value (an index job returns one only when it completed).
          if (j?.finishedOn && (j.returnvalue || (j.failedReason && j.attemptsMade >= (j.opts.attempts ?? 1)))) {
            const ok = Boolean(j.returnvalue);
            done.set(s, { at: j.finishedOn, ok, ...(!ok && j.failedReason ? { reason: j.failedReason } : {}) });
            return false;
          }
          return true;
        });
        if (todo.length) await sleep(250);
      }
      if (todo.length) throw new Error(`${todo.length} images not indexed after ${timeoutMs / 1000} s`);
      return done;
    };

    // 3. Warm-up (JIT, ONNX session, ES mappings): not counted.
    await finished(
      (await send(warm, 8, 2)).map((s) => s.sop),
      300_000,
    );
    log('warm-up done');

    // 4. Throughput.
    const cpu0 = workers.map((w) => processCpuMs(w.child.pid!) ?? 0);
    const load0 = os.loadavg()[0]!;
    const t0 = Date.now();
    const thrSent = await send(thr, STOW_BATCH, STOW_CONCURRENCY);
    const stowDone = Date.now();
    log(`throughput: ${thr.length} images STOWed in ${((stowDone - t0) / 1000).toFixed(1)} s; waiting for the workers`);
    const thrDone = await finished(
      thrSent.map((s) => s.sop),
      Math.max(600_000, LIMIT * 1000),
    );
    const tp = summariseThroughput(t0, thrDone);
    const imagesPerS = tp.imagesPerS;
    const workerCpuMs = workers.reduce((acc, w, k) => acc + ((processCpuMs(w.child.pid!) ?? 0) - (cpu0[k] ?? 0)), 0);
    const load1 = os.loadavg()[0]!;
    log(
      `throughput: ${imagesPerS.toFixed(1)} images/s end to end (${tp.indexed} indexed in ${tp.seconds.toFixed(1)} s, ${tp.refused} refused), worker CPU ${(workerCpuMs / thr.length).toFixed(0)} ms/image`,
    );
    // The latency phase is paced from this rate: with nothing indexed there is no pace to keep.
    if (tp.indexed === 0) {
      const why = summariseRefusals({ throughput: thrDone }).firstReason;
      throw new Error(`the worker refused all ${tp.images} images of the throughput phase${why ? ` (first: ${why})` : ''}`);
    }

    // 5. Latency at a sustainable pace.
    let latDone = new Map<string, JobEnd>();
    let latSent: Sent[] = [];
    let paceRate = 0;
    if (lat.length) {
      paceRate = PACE * imagesPerS;
      log(`latency: ${lat.length} images, one per STOW, at ${paceRate.toFixed(1)} images/s`);
      latSent = await send(lat, 1, 8, 1000 / paceRate);
      latDone = await finished(
        latSent.map((s) => s.sop),
        600_000,
      );
    }
    const latency = summariseLatency(latSent, latDone);

    // 6. Every image in the index? (the live alias, as /similar reads it)
    const index = createVectorIndex({ es: { url: esUrl, index: esIndex }, dataDir: STACK_DIR });
    const all = [...thr, ...lat].map((i) => i.sopInstanceUid);
    const present = await index.has(all);
    await index.close();
    const refused = summariseRefusals({ throughput: thrDone, latency: latDone });
    if (refused.total) log(`refused by the worker: ${refused.total} (${JSON.stringify(refused.byPhase)}); first: ${refused.firstReason}`);

    const { p50, p95 } = latency;
    const workerCpuMsPerImage = Math.round(workerCpuMs / thr.length);
    const ceiling = workerCpuCeiling(os.cpus().length, workerCpuMs / thr.length);
    const measured = {
      images: all.length,
      indexed: present.size,
      images_per_s: Number(imagesPerS.toFixed(2)),
      p50_ms_to_searchable: p50,
      p95_ms_to_searchable: p95,
      backend: 'elasticsearch',
      throughput_images: thr.length,
      latency_images: lat.length,
      latency_pace_images_per_s: Number(paceRate.toFixed(2)),
      ceiling_images_per_s: ceiling === null ? null : Number(ceiling.toFixed(1)),
      ceiling_fraction: ceiling === null ? null : Number((imagesPerS / ceiling).toFixed(3)),
      worker_cpu_ms_per_image: workerCpuMsPerImage,
      refused: refused.total,
      refused_throughput: refused.byPhase.throughput ?? 0,
      refused_latency: refused.byPhase.latency ?? 0,
      workers: WORKERS,
      ort_threads: THREADS,
      concurrency: CONCURRENCY,
      batch_size: BATCH,
      model: model.version,
      load_avg_1m: [Number(load0.toFixed(2)), Number(load1.toFixed(2))],
      cpus: os.cpus().length,
      dataset: path.basename(a.dataset),
    };
    const verdicts = ingestVerdicts(measured);
    const result = { ...measured, targets: verdicts.byTarget, targets_met: verdicts.met };
    for (const [target, verdict] of verdicts.rows) log(`target: ${target}: ${verdict.replaceAll('**', '')}`);

    if (!a['no-report']) {
      const int8 = /int8/i.test(model.version);
      upsertSection(
        path.join(ROOT, 'docs/benchmarks.md'),
        int8 ? 'Ingest with the INT8 model: STOW → searchable (bench:ingest)' : 'Ingest: STOW → searchable (bench:ingest)',
        [
          `Run ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), 1-min load average ${load0.toFixed(1)} → ${load1.toFixed(1)} during the throughput phase` +
            ' (other jobs shared the machine: compare runs only on a quiet machine).',
          '',
          `Real images: ${result.dataset} (${thr.length} + ${lat.length} images, converted to DICOM MR before timing), STOWed through the gateway (child process) into Orthanc; ` +
            `${WORKERS} \`cbmir worker\` process(es) with ${THREADS || "onnxruntime's default"} inference thread(s) each, concurrency ${CONCURRENCY}, micro-batches of ${BATCH} (wait ${BATCH_WAIT} ms), model ${model.version} (${int8 ? 'INT8 (CBMIR_MODEL=' + path.relative(ROOT, model.file) + ')' : 'FP32'}, CPU), Elasticsearch backend (bulk writes, refresh=wait_for).`,
          '',
          markdownTable(
            ['measure', 'value'],
            [
              ['images stored / indexed', `${result.images} / ${result.indexed}`],
              ['throughput, end to end (first STOW sent → last image searchable; indexed images only)', `${result.images_per_s} images/s`],
              [
                `CPU-bound ceiling of the workers, measured: ${result.cpus} CPUs ÷ worker CPU per image`,
                result.ceiling_images_per_s === null ? '-' : `${result.ceiling_images_per_s} images/s`,
              ],
              ['throughput ÷ that ceiling', result.ceiling_fraction === null ? '-' : `${(result.ceiling_fraction * 100).toFixed(0)} %`],
              ['worker CPU per image', `${result.worker_cpu_ms_per_image} ms`],
              [`STOW answered → searchable, p50 (paced at ${result.latency_pace_images_per_s} images/s)`, p50 === null ? '-' : `${p50} ms`],
              ['STOW answered → searchable, p95', p95 === null ? '-' : `${p95} ms`],
              [
                'refused by the worker (not in throughput or latency)',
                `${result.refused} (throughput phase ${result.refused_throughput}, latency phase ${result.refused_latency})`,
              ],
            ],
          ),
          '',
          '"Searchable" = the job finished, which happens after the bulk write returned with refresh=wait_for. The ceiling is what the workers would reach with every CPU to themselves at the CPU per image they used in this run (gateway, Orthanc and Elasticsearch need CPU too, so it is not reachable in full).',
          '',
          markdownTable(['target (issue #4)', 'result'], verdicts.rows),
          '',
          `JSON: \`${JSON.stringify(result)}\``,
        ].join('\n'),
      );
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
    await stow.close();
  } finally {
    for (const w of workers) await w.stop();
    await gateway?.stop();
    if (ownQueue) await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close().catch(() => undefined);
    queueConn.disconnect();
    // Leave the shared services as found: this run's index and studies go.
    const admin = new Client({ node: esUrl });
    await admin.indices.delete({ index: `${esIndex}*`, ignore_unavailable: true, allow_no_indices: true } as never).catch(() => undefined);
    await admin.close();
    await deleteStudiesOf(orthancUrl, plan.instances.slice(0, need)).catch(() => undefined);
    stopEnsuredServices(log);
  }
}

/** Remove this run's studies from Orthanc (REST /tools/lookup + DELETE). */
async function deleteStudiesOf(orthancUrl: string, instances: readonly PlannedInstance[]): Promise<void> {
  for (const uid of new Set(instances.map((i) => i.studyInstanceUid))) {
    const r = await fetch(`${orthancUrl}/tools/lookup`, { method: 'POST', body: uid });
    if (!r.ok) continue;
    for (const hit of (await r.json()) as { ID: string; Type: string }[]) {
      if (hit.Type === 'Study') await fetch(`${orthancUrl}/studies/${hit.ID}`, { method: 'DELETE' });
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ingest: ${(err as Error).stack ?? String(err)}\n`);
  // a failure before the run's own try (datasets, a service that did not start) still stops what was started
  stopEnsuredServices((msg) => process.stderr.write(`${msg}\n`));
  process.exit(1);
});
