/**
 * `npm run bench:similar` — /similar under concurrent users, against the published
 * system's Table 6 (1 user 274 ms avg … 128 users 25.7 s, timeouts at 256).
 *
 *   tsx bench/similar.ts [--min-docs 10000] [--levels 1,2,4,…,512] [--duration-ms 10000]
 *                        [--warmup-ms 2000] [--prewarm-ms 20000] [--upload-requests 40] [--load-only] [--clone-copies]
 *                        [--no-report] [--help]
 *
 * The index: ≥ --min-docs real images. The real datasets (CBMIR_BENCH_SIMILAR_DATASETS:
 * comma-separated dataset folder names under CBMIR_DATASETS, or absolute paths; default
 * figshare-cheng,ixi-normal, 3,064 + 581 images; CBMIR_DATASETS is the folder holding the
 * datasets, default ../shared/datasets, as for models/train) hold fewer, so they are
 * loaded several times, each time under its own dataset name
 * (`<name>-copy<k>`): every copy gets its own deterministic UIDs and patients
 * (workers/load/dataset.ts), i.e. the archive holds the same real pixels as several
 * patients — no image is invented. Loaded with `cbmir load` through the gateway and
 * embedded by a `cbmir worker`, as in production. State persists in .stack/bench-similar
 * (the services are stopped at the end unless CBMIR_BENCH_KEEP_STACK=1; their data stays), and
 * loading is skipped when the index already holds the planned images: a rerun measures only.
 *
 * Each level: N users (one keep-alive connection each), each issuing
 * GET /similar?StudyInstanceUID=…&SeriesInstanceUID=…&SOPInstanceUID=…&limit=10 for a
 * random indexed instance, back to back: one closed loop of --warmup-ms then --duration-ms
 * (bench/lib/load.ts); only requests that start in the --duration-ms window are recorded.
 * Errors: non-200 answers and requests without an answer in 30 s; they count in avg/p90/max
 * at their elapsed time (a timeout at 30 s), and ok_avg/p90/max_ms are the 200 answers alone.
 * Upload: POST /similar (application/dicom) of a real image that is not in the archive
 * (an image of the figshare dataset, else of the first one, converted under a dataset
 * name that is never loaded), one user, sequential; p50 of the 200 answers, and
 * upload_errors = non-200 answers and uploads without an answer, the 3 warm-ups included.
 *
 * Prints one JSON object as the last stdout line, then writes the "Similar" section of
 * docs/benchmarks.md, then docs/bench-similar.png (headless Chromium; a plot that cannot
 * be drawn only warns, so it never costs the measured run):
 *   {"levels":{"1":{"avg_ms","p90_ms","max_ms","errors","timeouts","ok_avg_ms","ok_p90_ms","ok_max_ms"},…},
 *    "upload_p50_ms","upload_errors","tenfold":{"one_user_avg","users_128_avg","users_256_no_errors","met"},
 *    "backend":"elasticsearch"}
 * tenfold: the verdicts on the headline claim, ≥ 10× the published system (similar-summary.ts).
 *
 * Ports (env): CBMIR_BENCH_ORTHANC_PORT [18061], CBMIR_BENCH_REDIS_PORT [16383],
 * CBMIR_BENCH_ES_PORT [19204], CBMIR_BENCH_GATEWAY_PORT [18090]; or running services via
 * CBMIR_BENCH_ORTHANC_URL / CBMIR_BENCH_REDIS_URL / CBMIR_BENCH_ES_URL.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { decodeSourceImage } from '../core/dicom/source-image.js';
import type { VectorDoc } from '../core/index/types.js';
import { readDataset, type PlannedInstance } from '../workers/load/dataset.js';
import { convertInstance } from '../workers/load.js';
import {
  ROOT,
  ensureService,
  stopEnsuredServices,
  indexCount,
  manifestVersion,
  loadThroughGateway,
  openIndex,
  startGateway,
  startWorker,
  waitIndexed,
  drainIndexQueue,
  type LiveUrls,
  type WorkerChild,
} from './lib/live-stack.js';
import { benchCli, intSetting, orUsageExit, portFromEnv } from './lib/args.js';
import type { StartedChild } from './lib/child.js';
import { processCpuMs, selfCpuMs } from './lib/cpu.js';
import { datasetDirs } from './lib/datasets.js';
import { runLoad } from './lib/load.js';
import { linePlotPng, linePlotSvg, type PlotSpec } from './lib/plot.js';
import { markdownTable, upsertSection } from './lib/report.js';
import {
  levelErrorsSentence,
  orthancCpuSentence,
  peakLevel,
  similarResultJson,
  speedUpCell,
  summariseUploads,
  tenfoldVerdicts,
  timedUpload,
  type LevelLatency,
  type SimilarResult,
  type UploadAnswer,
  type UploadSummary,
} from './lib/similar-summary.js';

const a = benchCli(
  'bench:similar',
  `usage: npm run bench:similar -- [options]   (or: npm run bench -- similar [options])

/similar under 1…N concurrent users and query-by-upload, against the published system
(Table 6). Loads ≥ --min-docs real images through the gateway first unless the index in
.stack/bench-similar holds them. Prints one JSON line; writes the "Similar" section of
docs/benchmarks.md and docs/bench-similar.png. Ports and services: CBMIR_BENCH_* (see
bench/similar.ts).`,
  {
    'min-docs': { type: 'string', default: '10000', value: 'N', help: 'images the index must hold' },
    levels: { type: 'string', default: '1,2,4,8,16,32,64,128,256,512', value: 'N,…', help: 'concurrent users per level' },
    'duration-ms': { type: 'string', default: '10000', value: 'MS', help: 'measurement window per level' },
    'warmup-ms': { type: 'string', default: '2000', value: 'MS', help: 'unrecorded load before each window (same loop)' },
    'prewarm-ms': {
      type: 'string',
      default: '20000',
      value: 'MS',
      help: 'unrecorded load (8 users) once before the upload and the levels: services just started (a fresh JVM) are not what a viewer queries',
    },
    'upload-requests': { type: 'string', default: '40', value: 'N', help: 'query-by-upload requests (0: none)' },
    'load-only': { type: 'boolean', help: 'load and index, measure nothing' },
    'clone-copies': { type: 'boolean', help: "index copies 2…k by copying copy 1's checked vectors" },
    'no-report': { type: 'boolean', help: 'print the JSON only; leave docs/ alone' },
  },
);
const int = (name: string, v: string | undefined, min = 1): number => orUsageExit('bench:similar', () => intSetting(`--${name}`, v, min));
const MIN_DOCS = int('min-docs', a['min-docs']);
const LEVELS = (a.levels ?? '').split(',').map((s) => int('levels', s.trim()));
const DURATION_MS = int('duration-ms', a['duration-ms']);
const WARMUP_MS = int('warmup-ms', a['warmup-ms'], 0);
const PREWARM_MS = int('prewarm-ms', a['prewarm-ms'], 0);
/** Users of the pre-warm: enough to exercise every part's parallel paths, few enough not to queue. */
const PREWARM_USERS = 8;
const UPLOADS = int('upload-requests', a['upload-requests'], 0);
const TIMEOUT_MS = 30_000;
const env = process.env;
const portOf = (name: string, dflt: number): number => orUsageExit('bench:similar', () => portFromEnv(name, dflt, env));
const STACK_DIR = path.join(ROOT, '.stack/bench-similar');
const GATEWAY_PORT = portOf('CBMIR_BENCH_GATEWAY_PORT', 18090);
const DATASETS = datasetDirs(env.CBMIR_BENCH_SIMILAR_DATASETS, ['figshare-cheng', 'ixi-normal']);
// What the parties can run on: the "if the CPUs were ours" figures divide by it.
const CPUS = os.availableParallelism();
const WARMUP_UPLOADS = 3;

/** Table 6 of the published paper (ms: average, maximum, 90th percentile); ≥ 256 users: every request timed out (30 s). */
const PUBLISHED: Record<number, { avg: number; p90?: number; max?: number; note?: string }> = {
  1: { avg: 273.98, max: 1373, p90: 333.0 },
  2: { avg: 434.48, max: 2696, p90: 531.0 },
  4: { avg: 918.89, max: 2233, p90: 1187.0 },
  8: { avg: 1758.38, max: 4423, p90: 2219.0 },
  16: { avg: 3225.49, max: 8230, p90: 3903.1 },
  32: { avg: 6432.68, max: 12541, p90: 7775.4 },
  64: { avg: 13629.18, max: 24391, p90: 16337.4 },
  128: { avg: 25672.47, max: 39196, p90: 28909.1 },
  256: { avg: Number.NaN, note: 'all requests timed out (30 s)' },
};

const log = (m: string): void => void process.stderr.write(`[bench:similar] ${m}\n`);

interface Level extends LevelLatency {
  errors: number;
  requests: number;
  rps: number;
  first_error?: string;
  /** CPU ms over the measurement window per 200 answer started in it: gateway, Elasticsearch, Orthanc, load generator. */
  cpu?: { gateway: number; es: number; orthanc: number; client: number };
}

async function main(): Promise<void> {
  const urls: LiveUrls = {
    orthanc: ensureService(
      'orthanc',
      { stackDir: STACK_DIR, port: portOf('CBMIR_BENCH_ORTHANC_PORT', 18061), url: env.CBMIR_BENCH_ORTHANC_URL },
      log,
    ),
    redis: ensureService(
      'redis',
      { stackDir: STACK_DIR, port: portOf('CBMIR_BENCH_REDIS_PORT', 16383), url: env.CBMIR_BENCH_REDIS_URL },
      log,
    ),
    es: ensureService('es', { stackDir: STACK_DIR, port: portOf('CBMIR_BENCH_ES_PORT', 19204), url: env.CBMIR_BENCH_ES_URL }, log),
    esIndex: 'bench-similar',
    dataDir: path.join(STACK_DIR, 'data'),
  };
  // Copies of the real datasets until the plan reaches MIN_DOCS.
  const copies: { dir: string; name: string; instances: PlannedInstance[] }[] = [];
  let planned = 0;
  for (let k = 1; planned < MIN_DOCS; k++) {
    for (const dir of DATASETS) {
      const base = await readDataset(dir);
      const name = `${base.dataset}-copy${k}`;
      const plan = await readDataset(dir, name);
      copies.push({ dir, name, instances: plan.instances });
      planned += plan.instances.length;
    }
    if (k > 100) throw new Error('the datasets hold no images');
  }
  const all = copies.flatMap((c) => c.instances);
  log(`index plan: ${all.length} images = ${copies.map((c) => `${c.name} (${c.instances.length})`).join(' + ')}`);

  const index = openIndex(urls);
  let gateway: StartedChild | undefined;
  let worker: WorkerChild | undefined;
  try {
    gateway = await startGateway(urls, GATEWAY_PORT);
    const have = await indexCount(index);
    if (have >= all.length)
      log(`index ${urls.esIndex} already holds ${have} documents: not loading (delete .stack/bench-similar to start over)`);
    else {
      log(`index holds ${have} of ${all.length}: loading through the gateway (re-sent instances are deduplicated)`);
      worker = startWorker(urls);
      await worker.ready;
      const t0 = Date.now();
      for (const c of copies) {
        if (await inArchive(urls.orthanc, c.instances[c.instances.length - 1]!)) log(`  ${c.name}: already in the archive, not re-sent`);
        else await loadThroughGateway(GATEWAY_PORT, c.dir, c.name, log);
      }
      if (a['clone-copies']) {
        const firsts = copies.filter((c, i) => copies.findIndex((o) => o.dir === c.dir) === i);
        await waitIndexed(
          urls,
          index,
          0,
          log,
          3_600_000,
          firsts.flatMap((c) => c.instances.map((i) => i.sopInstanceUid)),
        );
        await worker.stop();
        worker = undefined;
        await cloneCopies(index, copies);
      }
      await waitIndexed(urls, index, all.length, log);
      log(`loaded and indexed in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      await worker?.stop();
      worker = undefined;
    }
    const docs = await indexCount(index);
    const servedVersion = await index.liveVersion().catch(() => undefined);
    if (a['load-only']) {
      log(`--load-only: ${docs} documents indexed`);
      return;
    }
    // Uploads need a worker (embed jobs); queued index jobs for images already indexed would only compete for the CPUs.
    if (UPLOADS > 0) {
      const drained = docs >= all.length ? await drainIndexQueue(urls) : 0;
      if (drained) log(`removed ${drained} queued index jobs of already indexed images`);
      worker = startWorker(urls);
      await worker.ready;
    }

    // The indexed instances the users query (present in the index: checked, not assumed).
    const present = await index.has(all.map((i) => i.sopInstanceUid));
    const pool = all.filter((i) => present.has(i.sopInstanceUid));
    if (pool.length < all.length)
      log(`warning: ${all.length - pool.length} planned images are not in the index; querying the ${pool.length} that are`);
    const pathFor = (): string => {
      const i = pool[Math.floor(Math.random() * pool.length)]!;
      return `/similar?StudyInstanceUID=${i.studyInstanceUid}&SeriesInstanceUID=${i.seriesInstanceUid}&SOPInstanceUID=${i.sopInstanceUid}&limit=10`;
    };
    const base = `http://127.0.0.1:${GATEWAY_PORT}`;
    const probe = await request(base + pathFor());
    const probeBody = await probe.body.text();
    if (probe.statusCode !== 200) throw new Error(`probe /similar answered ${probe.statusCode}: ${probeBody.slice(0, 300)}`);
    log(`probe: 200, Server-Timing ${String(probe.headers['server-timing'])}`);

    if (PREWARM_MS > 0) {
      // Elasticsearch reopened from disk answers its first kNN in ~0.5 s and takes tens of seconds
      // of queries to reach steady state (JIT, page cache): a level 1 right after a start measured it.
      const w = await runLoad({
        url: base + pathFor(),
        pathFor,
        connections: PREWARM_USERS,
        durationMs: PREWARM_MS,
        timeoutMs: TIMEOUT_MS,
      });
      log(`pre-warm: ${PREWARM_USERS} users for ${PREWARM_MS / 1000} s, ${w.requests} answered 200, ${w.errors} errors (not recorded)`);
    }
    // Query-by-upload first (1 user), while the machine is not hot from the levels.
    let upload: UploadSummary | undefined;
    let uploadImage = '';
    if (UPLOADS > 0) {
      const fig = DATASETS.find((d) => d.includes('figshare')) ?? DATASETS[0]!;
      const upPlan = await readDataset(fig, 'bench-similar-upload-not-archived');
      const inst = upPlan.instances[0]!;
      const bytes = await convertInstance(fig, inst, '20240101');
      const src = await decodeSourceImage(await readFile(path.resolve(fig, inst.file)));
      uploadImage = `${src.cols}×${src.rows} ${path.basename(fig)}`;
      let timing = '';
      const one = (): Promise<UploadAnswer> =>
        timedUpload(async () => {
          const r = await request(`${base}/similar?limit=10`, {
            method: 'POST',
            body: bytes,
            headers: { 'content-type': 'application/dicom' },
            headersTimeout: TIMEOUT_MS,
            bodyTimeout: TIMEOUT_MS,
          });
          await r.body.dump();
          timing = String(r.headers['server-timing'] ?? '');
          return r.statusCode;
        });
      const warm: UploadAnswer[] = [];
      for (let i = 0; i < WARMUP_UPLOADS; i++) warm.push(await one()); // ONNX session, JIT
      const measured: UploadAnswer[] = [];
      for (let i = 0; i < UPLOADS; i++) measured.push(await one());
      upload = summariseUploads(warm, measured);
      log(
        `upload (${uploadImage}, ${bytes.length} bytes, 1 user): p50 ${upload.p50} ms, p90 ${upload.p90} ms, ${upload.errors} errors (warm-ups included${upload.firstError ? `; first: ${upload.firstError}` : ''}); last Server-Timing ${timing}`,
      );
    }

    const levels: Record<string, Level> = {};
    const load = [os.loadavg()[0]!];
    const pidOf = (svc: string, file: string): number | undefined => {
      try {
        return Number(readFileSync(path.join(STACK_DIR, svc, file), 'utf8').trim()) || undefined;
      } catch {
        return undefined; // given by URL: not ours to measure
      }
    };
    const pids = {
      gateway: gateway.child.pid,
      es: env.CBMIR_BENCH_ES_URL ? undefined : pidOf('es', 'es.pid'),
      orthanc: env.CBMIR_BENCH_ORTHANC_URL ? undefined : pidOf('orthanc', 'orthanc.pid'),
    };
    const cpuNow = () => ({
      gateway: pids.gateway ? (processCpuMs(pids.gateway) ?? Number.NaN) : Number.NaN,
      es: pids.es ? (processCpuMs(pids.es) ?? Number.NaN) : Number.NaN,
      orthanc: pids.orthanc ? (processCpuMs(pids.orthanc) ?? Number.NaN) : Number.NaN,
      client: selfCpuMs(),
    });
    for (const users of LEVELS) {
      // CPU read at the window's edges: the warm-up and the answers after the window stay out of it.
      let c0: ReturnType<typeof cpuNow> | undefined;
      let c1: ReturnType<typeof cpuNow> | undefined;
      const r = await runLoad({
        url: base + pathFor(),
        pathFor,
        connections: users,
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
        timeoutMs: TIMEOUT_MS,
        onWindowStart: () => (c0 = cpuNow()),
        onWindowEnd: () => (c1 = cpuNow()),
      });
      levels[String(users)] = {
        avg_ms: round(r.meanMs),
        p90_ms: round(r.p90Ms),
        max_ms: round(r.maxMs),
        ok_avg_ms: round(r.ok.meanMs),
        ok_p90_ms: round(r.ok.p90Ms),
        ok_max_ms: round(r.ok.maxMs),
        errors: r.errors,
        timeouts: r.timeouts,
        requests: r.requests,
        rps: round(r.rps, 1),
        ...(r.firstError ? { first_error: r.firstError } : {}),
      };
      if (c0 && c1) {
        const [from, to] = [c0, c1];
        const per = (k: keyof typeof from): number => round((to[k] - from[k]) / Math.max(1, r.requests), 2);
        levels[String(users)]!.cpu = { gateway: per('gateway'), es: per('es'), orthanc: per('orthanc'), client: per('client') };
      }
      load.push(os.loadavg()[0]!);
      log(
        `${String(users).padStart(3)} users: avg ${round(r.meanMs)} ms, p90 ${round(r.p90Ms)} ms, max ${round(r.maxMs)} ms (all requests), ${r.requests} answered 200 (${round(r.rps, 1)}/s), errors ${r.errors} (${r.timeouts} timed out)${r.firstError ? ` (${r.firstError})` : ''}; load ${os.loadavg()[0]!.toFixed(1)}`,
      );
    }
    for (const [target, verdict] of tenfoldVerdicts(levels).rows)
      log(`10× the published system: ${target}: ${verdict.replaceAll('**', '')}`);

    const result = similarResultJson(levels, upload);
    // The JSON and the section first: drawing the plot needs Chromium, and a run must never be lost to it.
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (!a['no-report']) {
      const report: Report = {
        levels,
        upload,
        uploadImage,
        docs,
        servedVersion,
        copies,
        load,
        studies: new Set(pool.map((i) => i.studyInstanceUid)).size,
      };
      upsertSection(
        BENCHMARKS_MD,
        'Similar',
        reportSection(report, result, `![/similar latency vs concurrent users](${path.basename(PLOT_PNG)})`),
      );
      const missing = drawPlot(report);
      if (missing) {
        const svg = missing.svg ? `; the chart is in ${path.relative(ROOT, missing.svg)}` : '';
        log(`warning: docs/${path.basename(PLOT_PNG)} was not drawn (${missing.reason})${svg}; the JSON and the section are written`);
        // The link would show an earlier run's plot beside this run's figures.
        const note = `(No plot in this run: ${missing.reason}${missing.svg ? `; the chart as SVG: [${path.basename(missing.svg)}](${path.basename(missing.svg)})` : ''}.)`;
        upsertSection(BENCHMARKS_MD, 'Similar', reportSection(report, result, note));
      }
    }
  } finally {
    await worker?.stop();
    await gateway?.stop();
    await index.close();
    stopEnsuredServices(log);
  }
}

/** Whether Orthanc holds this instance (REST /tools/lookup). */
async function inArchive(orthanc: string, inst: PlannedInstance): Promise<boolean> {
  const r = await request(`${orthanc}/tools/lookup`, { method: 'POST', body: inst.sopInstanceUid });
  const found = r.statusCode === 200 ? ((await r.body.json()) as unknown[]) : (await r.body.dump(), []);
  return found.length > 0;
}

/**
 * --clone-copies: index copies 2…k by copying the worker's documents of copy 1 under
 * the copy's UIDs. A copy holds the same pixels and the same Patient ID as copy 1
 * (only its UIDs differ), so the worker would compute the same vector, label and
 * patient key; this is checked on every image of a later copy the worker did embed
 * (vectors must agree to 1e-5) before anything is copied. Saves ~65–100 ms of CPU per
 * image on a machine that is shared.
 */
async function cloneCopies(
  index: ReturnType<typeof openIndex>,
  copies: { dir: string; name: string; instances: PlannedInstance[] }[],
): Promise<void> {
  let checked = 0;
  let maxDiff = 0;
  let cloned = 0;
  for (const c of copies) {
    const src = copies.find((o) => o.dir === c.dir)!;
    if (src === c) continue;
    const present = await index.has(c.instances.map((i) => i.sopInstanceUid));
    for (let i = 0; i < c.instances.length; i += 64) {
      const part = c.instances.slice(i, i + 64);
      const docs = await Promise.all(part.map((_, j) => index.get(src.instances[i + j]!.sopInstanceUid)));
      const out: VectorDoc[] = [];
      for (let j = 0; j < part.length; j++) {
        const inst = part[j]!;
        const s = docs[j];
        if (!s) throw new Error(`clone: ${src.name} ${src.instances[i + j]!.file} is not indexed`);
        if (src.instances[i + j]!.file !== inst.file) throw new Error('clone: copies are not in the same order');
        if (present.has(inst.sopInstanceUid)) {
          const mine = await index.get(inst.sopInstanceUid);
          if (mine) {
            for (let d = 0; d < s.vector.length; d++)
              maxDiff = Math.max(maxDiff, Math.abs((mine.vector[d] as number) - (s.vector[d] as number)));
            if (mine.patientKey !== s.patientKey || mine.label !== s.label)
              throw new Error(`clone: ${c.name} ${inst.file}: patient key or label differ from ${src.name}; not cloning`);
            checked++;
          }
          continue;
        }
        out.push({
          ...s,
          sopInstanceUid: inst.sopInstanceUid,
          studyInstanceUid: inst.studyInstanceUid,
          seriesInstanceUid: inst.seriesInstanceUid,
          indexedAt: new Date().toISOString(),
        });
      }
      if (maxDiff > 1e-5)
        throw new Error(`clone: the worker's vectors of ${c.name} differ from ${src.name}'s by up to ${maxDiff}; not cloning`);
      if (out.length) {
        await index.ensure(out[0]!.vector.length, out[0]!.modelVersion);
        const r = await index.upsert(out);
        if (r.failed.length) throw new Error(`clone: ${r.failed.length} writes failed: ${r.failed[0]!.reason}`);
        cloned += r.written;
      }
    }
  }
  log(
    `clone: ${cloned} documents copied; ${checked} images embedded by the worker in both copies agreed (max |Δ| ${maxDiff.toExponential(1)})`,
  );
  cloneNote = { cloned, checked, maxDiff };
  // Kept with the stack's state, so later runs that reuse this index still report how it was filled.
  writeFileSync(path.join(STACK_DIR, 'clone.json'), JSON.stringify(cloneNote));
}

let cloneNote: { cloned: number; checked: number; maxDiff: number } | undefined;

function round(x: number, d = 2): number {
  return Math.round(x * 10 ** d) / 10 ** d;
}

const BENCHMARKS_MD = path.join(ROOT, 'docs/benchmarks.md');
const PLOT_PNG = path.join(ROOT, 'docs/bench-similar.png');

/** What the report is written from: measured in this run, or read from its index. */
interface Report {
  readonly levels: Record<string, Level>;
  readonly upload: UploadSummary | undefined;
  /** "<cols>×<rows> <dataset>" of the uploaded image. */
  readonly uploadImage: string;
  readonly docs: number;
  readonly servedVersion: string | undefined;
  readonly copies: { dir: string; name: string; instances: PlannedInstance[] }[];
  readonly load: number[];
  /** Distinct studies among the queried images: the access check's cache holds one entry per study. */
  readonly studies: number;
}

function plotSpec(r: Report): PlotSpec {
  const { levels } = r;
  const users = Object.keys(levels).map(Number);
  const pubUsers = users.filter((u) => PUBLISHED[u] && Number.isFinite(PUBLISHED[u]!.avg));
  return {
    title: `/similar latency vs concurrent users (${r.docs} indexed images, ${CPUS} CPUs)`,
    xLabel: 'concurrent users (log2)',
    yLabel: 'latency, ms (log10)',
    logX: true,
    logY: true,
    series: [
      { name: 'published avg (Table 6)', color: '#c0392b', dashed: true, points: pubUsers.map((u) => [u, PUBLISHED[u]!.avg]) },
      {
        name: 'published p90',
        color: '#e67e22',
        dashed: true,
        points: pubUsers.filter((u) => PUBLISHED[u]!.p90 !== undefined).map((u) => [u, PUBLISHED[u]!.p90!]),
      },
      ...(users.includes(256) ? [{ name: 'published: 30-s timeouts', color: '#8e44ad', points: [[256, 30_000] as [number, number]] }] : []),
      { name: 'ours avg', color: '#1f4e9c', points: users.map((u) => [u, levels[String(u)]!.avg_ms]) },
      { name: 'ours p90', color: '#16a085', points: users.map((u) => [u, levels[String(u)]!.p90_ms]) },
      { name: 'ours max', color: '#7f8c8d', points: users.map((u) => [u, levels[String(u)]!.max_ms]) },
    ],
  };
}

/**
 * docs/bench-similar.png, or why not: a plot needs Chromium, which a run must never be lost
 * to, so a failure only comes back (with a fresh SVG of the chart beside it when the chart
 * itself can be drawn, whatever the rasteriser's problem was).
 */
function drawPlot(r: Report): { reason: string; svg?: string } | undefined {
  let spec: PlotSpec | undefined;
  try {
    spec = plotSpec(r);
    linePlotPng(PLOT_PNG, spec);
    return undefined;
  } catch (err) {
    const reason = ((err as Error).message.split('\n')[0] ?? '').replaceAll(`${ROOT}/`, '');
    const svg = PLOT_PNG.replace(/\.png$/, '.svg');
    try {
      if (spec) writeFileSync(svg, linePlotSvg(spec));
      return spec ? { reason, svg } : { reason };
    } catch {
      return { reason };
    }
  }
}

function reportSection(r: Report, result: SimilarResult, figure: string): string {
  const { levels, upload, copies, docs, servedVersion, load } = r;
  const users = Object.keys(levels).map(Number);
  if (!cloneNote) {
    try {
      cloneNote = JSON.parse(readFileSync(path.join(STACK_DIR, 'clone.json'), 'utf8')) as typeof cloneNote;
    } catch {
      // the worker embedded every copy
    }
  }
  const fmt = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '–' : x >= 1000 ? x.toFixed(0) : x.toFixed(1));
  const rows = users.map((u) => {
    const o = levels[String(u)]!;
    const p = PUBLISHED[u];
    return [
      u,
      p ? (p.note ?? fmt(p.avg)) : 'beyond the published range',
      p ? fmt(p.p90) : '–',
      p ? fmt(p.max) : '–',
      fmt(o.avg_ms),
      fmt(o.p90_ms),
      fmt(o.max_ms),
      o.errors,
      o.rps,
      speedUpCell(p?.avg, o),
    ];
  });
  const cpuSum = (c: Level['cpu']): number => (c ? c.gateway + c.es + (Number.isNaN(c.orthanc) ? 0 : c.orthanc) + c.client : Number.NaN);
  // Each dataset's first copy: the real images, before any duplication.
  const originals = copies.filter((c, i) => copies.findIndex((o) => o.dir === c.dir) === i);
  const realImages = originals.reduce((n, c) => n + c.instances.length, 0);
  const accessTtlS = Number(process.env.CBMIR_ACCESS_CACHE_MS || 30_000) / 1000;
  const l1 = levels['1'];
  const l256 = levels['256'];
  const l512 = levels['512'];
  const check = (ok: boolean | undefined): string => (ok === undefined ? 'not run' : ok ? 'met' : '**missed**');
  const uploadErrors = upload
    ? `${upload.errors} error${upload.errors === 1 ? '' : 's'} (non-200 answers and uploads without an answer, warm-ups included${upload.firstError ? `; first: ${upload.firstError}` : ''})`
    : '';
  const peak = peakLevel(levels);
  return [
    `\`npm run bench:similar\`, run ${new Date().toISOString().slice(0, 16)}Z on ${CPUS} CPUs (${os.cpus()[0]?.model ?? '?'}); 1-min load average ${load.map((x) => x.toFixed(1)).join(' → ')} across the levels` +
      ' (the machine was shared with other jobs: absolute figures move with them).',
    '',
    `Index: ${docs} images in Elasticsearch (int8 HNSW, vectors of model ${servedVersion ?? '?'}${servedVersion === manifestVersion() ? ', the shipped one' : `; the shipped model is ${manifestVersion()} — a query costs the same with either: same dimensions, same index`}).` +
      ` The real datasets hold ${realImages.toLocaleString('en-US')} images (${originals.map((c) => `${c.name.replace(/-copy\d+$/, '')}: ${c.instances.length}`).join(', ')}), so they were loaded` +
      ` ${copies.length / Math.max(1, originals.length)} times as separate copies (${copies.map((c) => `${c.name}: ${c.instances.length}`).join(', ')}):` +
      ' each copy is a separate dataset name, hence its own Study/Series/SOP Instance UIDs; the pixels are the same real images, nothing is synthesised.' +
      " A copy keeps the dataset's Patient IDs, so /similar (excludeSamePatient, the default) never answers a query with its own duplicate." +
      ' Duplicated pixels do not change the cost of a query (a kNN over the same number of vectors).' +
      (cloneNote
        ? ` All copies were STOWed through the gateway; to spare the shared CPUs, the worker embedded copy 1 and ${cloneNote.cloned} documents of the later copies were copied from copy 1 under their own UIDs (\`--clone-copies\`), after checking on ${cloneNote.checked} images that the worker embedded in both copies that vectors agree (max |Δ| ${cloneNote.maxDiff.toExponential(1)}), labels and patient keys are equal.`
        : ''),
    '',
    `Each level: N users, one keep-alive connection each, issuing \`GET /similar?StudyInstanceUID=…&SeriesInstanceUID=…&SOPInstanceUID=…&limit=10\` for a random indexed instance back to back in one closed loop: ${WARMUP_MS / 1000} s of warm-up, then a ${DURATION_MS / 1000}-s window; only requests that started in the window are recorded, each waited for. Before the upload and the first level, ${PREWARM_MS / 1000} s of unrecorded load (${PREWARM_USERS} users) brings services just started to the state of a running deployment.` +
      ` Errors = non-200 answers or no answer within ${TIMEOUT_MS / 1000} s; avg, p90 and max count every recorded request, a failed one at the time it took (a timeout at ${TIMEOUT_MS / 1000} s), and the JSON gives the 200 answers alone as ok_avg_ms, ok_p90_ms, ok_max_ms. req/s = 200 answers started in the window ÷ the window.` +
      ` Gateway and one worker are child processes; Orthanc, Redis and Elasticsearch from deploy/local/stack.sh; the load generator runs on the same ${CPUS} CPUs.`,
    '',
    markdownTable(
      [
        'users',
        'published avg ms',
        'published p90 ms',
        'published max ms',
        'ours avg ms',
        'ours p90 ms',
        'ours max ms',
        'ours errors',
        'ours req/s',
        'avg speed-up',
      ],
      rows,
    ),
    '',
    'Published: Table 6 of the reference paper (its system re-extracted features on every query; at 256 users every request timed out after 30 s, so 256 and 512 have no published latency).' +
      ' Speed-up = published avg ÷ ours, none where any of our requests failed.',
    '',
    markdownTable(['10× the published system (the headline claim)', 'result'], tenfoldVerdicts(levels).rows),
    '',
    upload
      ? `Query by upload (POST /similar, application/dicom, one ${r.uploadImage} image converted to DICOM under a dataset name that is never loaded, so it is not in the archive; 1 user, ${upload.requests} requests after ${upload.warmups} warm-ups): ` +
        (upload.p50 === null
          ? `no request answered 200; ${uploadErrors}.`
          : `p50 ${upload.p50} ms, p90 ${upload.p90} ms over the ${upload.samples.length} answered 200 (embedded by the worker on CPU via a high-priority job, nothing stored); ${uploadErrors}.`)
      : 'Query by upload: not run (--upload-requests 0).',
    '',
    figure,
    '',
    "**What limits it.** CPU per answered request (each process's CPU time between the window's opening and closing ÷ the 200 answers to requests started in it):",
    '',
    markdownTable(
      ['users', 'gateway ms', 'Elasticsearch ms', 'Orthanc ms', 'load generator ms', 'sum ms', `req/s if the ${CPUS} CPUs were ours`],
      users.map((u) => {
        const c = levels[String(u)]!.cpu;
        const sum = cpuSum(c);
        return [
          u,
          fmt(c?.gateway),
          fmt(c?.es),
          fmt(c?.orthanc),
          fmt(c?.client),
          fmt(sum),
          Number.isFinite(sum) ? Math.round((CPUS * 1000) / sum) : '–',
        ];
      }),
    ),
    '',
    "A query costs a read of its stored vector and the filtered kNN (int8 HNSW, float re-scoring) in Elasticsearch, the gateway's own work (parameters, JSON, the ES client) and the access check: " +
      `the caller's right to read each result study is asked of the PACS with a QIDO and cached per credential and study for CBMIR_ACCESS_CACHE_MS (${accessTtlS} s); ` +
      `with ${r.studies.toLocaleString('en-US')} studies among the queried images and ${DURATION_MS / 1000}-s levels (after ${WARMUP_MS / 1000} s of warm-up each) the cache keeps expiring, which is the Orthanc column. ` +
      'Concurrent requests share work (core/batcher.ts): their vector reads go out as one `_mget` and their uncached studies as one QIDO (≤ 50 studies) whenever a call is already in flight, so the more users wait, the fewer QIDOs per request. ' +
      `${orthancCpuSentence(levels)} ` +
      `Throughput levels off where the CPUs are saturated, and beyond that latency grows linearly with the users (queueing: latency ≈ users ÷ throughput); ${levelErrorsSentence(levels)} ` +
      (() => {
        const c = l256?.cpu;
        if (!c) return '';
        const sum = cpuSum(c);
        const rate = (CPUS * 1000) / sum;
        const reached = peak ? `${peak.rps} req/s were reached (at ${peak.users} users, the level with the highest throughput). ` : '';
        return (
          `At 256 users the parties used ${fmt(sum)} ms of CPU per request, i.e. at most ≈ ${Math.round(rate)} req/s with all ${CPUS} CPUs to ourselves and ≈ ${fmt((256 / rate) * 1000)} ms average latency at 256 users` +
          ` (target p90 ≤ 1,000 ms: ${256 / rate < 0.8 ? 'within reach at this CPU cost' : "out of reach at this run's CPU cost, which itself grows with contention"}); ` +
          (peak && peak.rps < 0.85 * rate ? `other jobs held part of the CPUs during this run, so ${reached}` : reached) +
          'Levers: a longer access-cache TTL (a security trade-off: revocation takes that long), more CPUs — Elasticsearch, gateway and Orthanc scale out separately.'
        );
      })(),
    '',
    markdownTable(
      ['target (issue #5)', 'result'],
      [
        ['p90 ≤ 50 ms at 1 user', `${check(l1 ? l1.p90_ms <= 50 : undefined)} (${l1 ? fmt(l1.p90_ms) : '–'} ms)`],
        [
          'p90 ≤ 1,000 ms and 0 errors at 256 users',
          `${check(l256 ? l256.p90_ms <= 1000 && l256.errors === 0 : undefined)} (${l256 ? `${fmt(l256.p90_ms)} ms, ${l256.errors} errors` : '–'})`,
        ],
        ['0 errors at 512 users', `${check(l512 ? l512.errors === 0 : undefined)} (${l512 ? `${l512.errors} errors` : '–'})`],
        [
          'upload p50 ≤ 150 ms on CPU (and every upload answered)',
          `${check(upload ? upload.p50 !== null && upload.p50 <= 150 && upload.errors === 0 : undefined)} (${upload ? `${upload.p50 ?? '–'} ms, ${upload.errors} errors` : '–'})`,
        ],
      ],
    ),
    '',
    `JSON: \`${JSON.stringify(result)}\``,
  ].join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:similar: ${(err as Error).stack ?? String(err)}\n`);
  // a failure before the run's own try (datasets, a service that did not start) still stops what was started
  stopEnsuredServices((msg) => process.stderr.write(`${msg}\n`));
  process.exit(1);
});
